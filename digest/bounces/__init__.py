"""Deliverability: where bounces come back to (VERP), what an SMTP reply or a bounce report means, reading reports
from mailboxes, applying them to the ledger, and the bounce and complaint rates of the last issues.

One module per job: `verp` (the signed return path), `classify` (hard or soft, from a status code), `reports`
(DSN / ARF / provider formats -> notices), `mailboxes` (Maildir, mbox, .eml, stdin -> raw messages), `importer`
(notices -> ledger and subscribers, one transaction per message or provider event), `rates` (counts -> rates and
warnings), `webhooks` (the mail providers' signed webhooks -> events).
"""
