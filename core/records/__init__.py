"""What is kept: the shared SQLite database, the audit log, students' requests, and the mail about them."""

from core.records.audit import Actor, AuditLog, Entry, Item, record
from core.records.mail import notify_answer, notify_new_request
from core.records.requests import LIMITS, Kind, NewRequests, Request, RequestRefused, RequestStore, Status

__all__ = ["LIMITS", "Actor", "AuditLog", "Entry", "Item", "Kind", "NewRequests", "Request", "RequestRefused",
           "RequestStore", "Status", "notify_answer", "notify_new_request", "record"]
