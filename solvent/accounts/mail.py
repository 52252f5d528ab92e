"""Outgoing mail (address verification, sign-up notices): SMTP when `SOLVENT_SMTP_URL` is set, else the log.

`smtp://user:password@host:587` uses STARTTLS, `smtps://…:465` TLS from the start, `smtp://host:25`
plain (a local relay). Without a URL the message is written to the `solvent.mail` log, so a single
machine's operator can read the verification link from the server's output.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

log = logging.getLogger("solvent.mail")


class Mailer:
    def __init__(self, smtp_url: str | None, sender: str = "solvent@localhost", timeout: float = 10.0):
        self.url = urlsplit(smtp_url) if smtp_url else None
        self.sender = sender
        self.timeout = timeout
        self.sent: list[EmailMessage] = []  # what this process sent or logged, newest last (bounded)

    def send(self, to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, to, subject
        msg.set_content(body)
        self.sent = (self.sent + [msg])[-100:]
        if self.url is None:
            log.warning("mail to %s (no SOLVENT_SMTP_URL set, so it is only logged): %s\n%s", to, subject, body)
            print(f"[solvent mail] to {to}: {subject}\n  {body}", flush=True)
            return
        u = self.url
        try:
            if u.scheme == "smtps":
                client = smtplib.SMTP_SSL(u.hostname, u.port or 465, timeout=self.timeout,
                                          context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(u.hostname, u.port or 25, timeout=self.timeout)
                if (u.port or 25) != 25:
                    client.starttls(context=ssl.create_default_context())
            with client:
                if u.username:
                    client.login(unquote(u.username), unquote(u.password or ""))
                client.send_message(msg)
        except (OSError, smtplib.SMTPException) as e:  # mail must not turn a sign-up into a 500
            log.error("could not send mail to %s through %s: %s", to, u.hostname, e)
