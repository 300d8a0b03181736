"""A locmem e-mail backend that refuses chosen addresses a number of times, like a flaky SMTP relay."""

import smtplib

from django.core.mail.backends.locmem import EmailBackend


class FlakyBackend(EmailBackend):
    failures: dict[str, int] = {}  # address -> how many more sends to it fail

    def send_messages(self, messages):
        for message in messages:
            for to in message.to:
                if self.failures.get(to, 0) > 0:
                    self.failures[to] -= 1
                    raise smtplib.SMTPRecipientsRefused({to: (450, b"mailbox busy")})
        return super().send_messages(messages)
