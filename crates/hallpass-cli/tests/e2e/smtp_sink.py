"""A throwaway SMTP server for the email notifier's end-to-end tests
(crates/hallpass-cli/tests/e2e/email.rs), on aiosmtpd.

Listens on a free 127.0.0.1 port in one of three modes: plain SMTP,
STARTTLS (required before MAIL) or TLS from the first byte, optionally
requiring a login. Each message it takes is parsed with Python's own email
package and written to OUT_DIR/NNNN.json (envelope, whether the
connection was TLS, the login used, the headers in order, the text and
HTML parts), written aside and renamed so a reader never sees half a file.

Prints "listening PORT" once it accepts connections, and stops when its
standard input closes (the test ends or dies).
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import threading
from email import policy
from email.parser import BytesParser

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content or envelope.content)
        parts = {}
        for part in message.walk():
            kind = part.get_content_type()
            if kind in ("text/plain", "text/html") and kind not in parts:
                parts[kind] = part.get_content()
        login = session.auth_data
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "login": login.decode() if isinstance(login, bytes) else login,
            "headers": [[name, str(value)] for name, value in message.items()],
            "content_type": message.get_content_type(),
            "text": parts.get("text/plain"),
            "html": parts.get("text/html"),
        }
        self.count += 1
        aside = os.path.join(self.out_dir, f".{self.count:04}.tmp")
        with open(aside, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(aside, os.path.join(self.out_dir, f"{self.count:04}.json"))
        return "250 OK"


def authenticator(username, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == username
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, auth_data=auth_data.login if ok else None)

    return check


def tls_context(cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve(args):
    context = tls_context(args.cert, args.key) if args.mode != "plain" else None
    handler = Sink(args.out_dir)
    login = {}
    if args.username is not None:
        login = {"auth_required": True, "authenticator": authenticator(args.username, args.password)}

    def protocol():
        if args.mode == "starttls":
            return SMTP(handler, tls_context=context, require_starttls=True, **login)
        if args.mode == "tls":
            # aiosmtpd counts only STARTTLS as TLS; here the whole connection is.
            return SMTP(handler, auth_require_tls=False, **login)
        return SMTP(handler, **login)

    loop = asyncio.get_running_loop()
    implicit = context if args.mode == "tls" else None
    server = await loop.create_server(protocol, "127.0.0.1", 0, ssl=implicit)
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    stopped = asyncio.Event()

    def wait_for_stdin_to_close():
        sys.stdin.read()
        loop.call_soon_threadsafe(stopped.set)

    threading.Thread(target=wait_for_stdin_to_close, daemon=True).start()
    await stopped.wait()
    server.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--username")
    parser.add_argument("--password")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
