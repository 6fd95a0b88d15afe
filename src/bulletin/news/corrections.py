"""Splits and merges staff made to the items of a page, kept per source and replayed on its drafts
at every ingest, so a re-ingested page neither brings back a merged item nor duplicates a split one.

Items are named by their ``source_id`` (``<file>#<key>``); the part cut off by a split is named
after its title line, so the same correction gives the same items every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from bulletin.models import NewsCorrection
from bulletin.news.draft import Block, Draft, single_line
from bulletin.news.text_pages import canonical_link, slug
from bulletin.news.topics import fold


def same_line(block: Block, line: str) -> bool:
    """The block is a heading or paragraph reading ``line`` (case, accents and spacing aside)."""
    if block.get("type") not in ("heading", "paragraph"):
        return False
    return _folded(block.get("text") or "") == _folded(line)


def _folded(text: str) -> str:
    return " ".join(fold(single_line(text)).replace("’", "'").split()).rstrip(" :")


def split_key(item_key: str, at: str) -> str:
    """The source_id of the item a split at ``at`` cuts off ``item_key``."""
    return f"{item_key.split('#', 1)[0]}#{slug(at) or 'split'}"


def split_draft(draft: Draft, at: str, new_key: str) -> tuple[Draft, Draft] | None:
    """The draft cut at its line ``at``: the part above, and a new draft titled ``at``; None when
    the line is not there, or nothing would be left above or below it."""
    index = next((i for i, block in enumerate(draft.body) if same_line(block, at)), None)
    if index is None or index == 0 or index == len(draft.body) - 1:
        return None
    above, below = draft.body[:index], draft.body[index + 1 :]
    title = single_line(draft.body[index]["text"]).rstrip(" :")
    first = replace(draft, body=above, link=canonical_link(above), summary="")
    second = Draft(
        source_id=new_key,
        title=title,
        body=below,
        link=canonical_link(below),
        language=draft.language,
        date_origin=draft.date_origin,
    )
    return first, second


def merge_drafts(first: Draft, second: Draft) -> Draft:
    """``first`` followed by ``second``, whose title becomes a sub-heading."""
    body = [*first.body, {"type": "heading", "text": second.title}, *second.body]
    return replace(first, body=body, link=first.link or second.link, summary="")


def load_corrections(session: Session, source: str) -> Sequence[NewsCorrection]:
    """The corrections of one source, in the order staff made them."""
    return session.scalars(
        select(NewsCorrection).where(NewsCorrection.source == source).order_by(NewsCorrection.id)
    ).all()


def apply_corrections(drafts: list[Draft], corrections: Sequence[NewsCorrection]) -> tuple[list[Draft], list[str]]:
    """The drafts after every correction, in order; notes say which ones no longer apply."""
    result = list(drafts)
    notes: list[str] = []
    for correction in corrections:
        keys = [draft.source_id for draft in result]
        if correction.action == "split" and correction.at:
            at_index = keys.index(correction.item_key) if correction.item_key in keys else None
            parts = None
            if at_index is not None and split_key(correction.item_key, correction.at) not in keys:
                parts = split_draft(result[at_index], correction.at, split_key(correction.item_key, correction.at))
            if at_index is None or parts is None:
                notes.append(f"the split at {correction.at!r} no longer applies: the page changed")
                continue
            result[at_index : at_index + 1] = list(parts)
        elif correction.action == "merge" and correction.other_key:
            if correction.item_key not in keys or correction.other_key not in keys:
                notes.append("a merge no longer applies: the page changed")
                continue
            first, second = keys.index(correction.item_key), keys.index(correction.other_key)
            result[first] = merge_drafts(result[first], result[second])
            del result[second]
    return result, notes
