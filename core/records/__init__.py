"""What is kept: the shared SQLite database, the audit log, students' requests, and the mail about them."""

from core.records import mail
from core.records.audit import Actor, AuditLog, Entry, Item, record
from core.records.requests import LIMITS, Kind, NewRequests, Request, RequestRefused, RequestStore, Status

__all__ = ["LIMITS", "Actor", "AuditLog", "Entry", "Item", "Kind", "NewRequests", "Request", "RequestRefused",
           "RequestStore", "Status", "mail", "record"]
