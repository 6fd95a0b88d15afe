#!/usr/bin/env bash
# Debian's dovecot-imapd for the bounce-mailbox tests: a local user, a self-signed certificate for
# 127.0.0.1, IMAP over TLS only (port 993), Maildir. Prints the two variables the tests read.
# Run as root on Debian; safe to run again (it reuses the user, certificate and running server).
set -euo pipefail

user=bulletinbounce
password=bulletin-bounce-test-password
dir=/etc/dovecot/bulletin-test
port=993

if ! command -v dovecot >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq dovecot-imapd >/dev/null
fi

if ! id "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /usr/sbin/nologin "$user"
fi
echo "$user:$password" | chpasswd

mkdir -p "$dir"
if [ ! -s "$dir/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
    chmod 600 "$dir/key.pem"
    chmod 644 "$dir/cert.pem"
fi

# Debian's 10-ssl.conf names the package's own certificate, which a container install may lack.
mkdir -p /etc/dovecot/private
[ -e /etc/dovecot/private/dovecot.pem ] || ln -s "$dir/cert.pem" /etc/dovecot/private/dovecot.pem
[ -e /etc/dovecot/private/dovecot.key ] || ln -s "$dir/key.pem" /etc/dovecot/private/dovecot.key

cat > /etc/dovecot/conf.d/99-bulletin-test.conf <<CONF
# Written by bulletin's .ci/dovecot.sh for the test suite.
listen = 127.0.0.1
protocols = imap
mail_location = maildir:~/Maildir
ssl = required
ssl_cert = <$dir/cert.pem
ssl_key = <$dir/key.pem
disable_plaintext_auth = yes
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = $port
    ssl = yes
  }
}
CONF

if doveadm service status >/dev/null 2>&1 || pgrep -x dovecot >/dev/null 2>&1; then
    doveadm reload
else
    dovecot
fi
for _ in $(seq 1 30); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.2
done

echo "export BULLETIN_TEST_IMAP=imaps://$user:$password@127.0.0.1:$port"
echo "export BULLETIN_TEST_IMAP_CA=$dir/cert.pem"
