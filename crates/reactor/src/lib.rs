//! Not implemented yet; filled in by its issue.
