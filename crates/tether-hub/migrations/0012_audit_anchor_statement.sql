-- The hub's signed statement (JSON) that retention deleted the events up to the anchor, so that
-- a verifier can tell retention from someone deleting the oldest events and rewriting the anchor.
-- NULL for anchors written before signed statements existed.
ALTER TABLE audit_anchor ADD COLUMN statement TEXT;
