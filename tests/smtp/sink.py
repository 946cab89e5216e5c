#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) for kanmon's tests.

usage: sink.py MODE OUT_DIR [CERT KEY]
MODE: plain | starttls (STARTTLS required) | smtps (implicit TLS) | reject (550 on RCPT)
Prints the port it listens on (127.0.0.1, chosen by the OS), then serves until killed.
Every accepted message is written to OUT_DIR as one JSON file with the envelope, the
headers and the decoded text and HTML parts.
"""
import asyncio
import email
import json
import os
import ssl
import sys
import uuid
from email import policy

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, out, mode):
        self.out = out
        self.mode = mode

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "reject":
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "headers": [[k, str(v)] for k, v in msg.items()],
            "text": text.get_content() if text else "",
            "html": html.get_content() if html else "",
            "tls": session.ssl is not None,
        }
        name = os.path.join(self.out, uuid.uuid4().hex)
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name + ".json")
        return "250 OK"


def main():
    mode, out = sys.argv[1], sys.argv[2]
    context = None
    if mode in ("starttls", "smtps"):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = Sink(out, mode)

    def factory():
        return SMTP(
            handler,
            tls_context=context if mode == "starttls" else None,
            require_starttls=mode == "starttls",
            hostname="sink.test",
        )

    server = loop.run_until_complete(
        loop.create_server(factory, "127.0.0.1", 0, ssl=context if mode == "smtps" else None)
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
