-- eightms.message_state_ok, the check on every message row version:
-- direction out or in; one of the eight states; pending true exactly for
-- queued and claimed, NULL for the rest (false is never right).
SELECT d AS direction, s AS status, p AS pending, eightms.message_state_ok(d, s, p) AS ok
  FROM unnest(ARRAY['out', 'in']) d,
	   unnest(ARRAY['queued', 'claimed', 'sent', 'delivered', 'failed', 'expired', 'canceled', 'received']) s,
	   unnest(ARRAY[true, false, NULL]) p
 ORDER BY d DESC, s, p NULLS LAST;
-- Anything else is refused: other directions and states, near misses,
-- case, padding, and NULL direction or status.
SELECT d AS direction, s AS status, p AS pending, eightms.message_state_ok(d, s, p) AS ok
  FROM (VALUES ('both', 'queued', true), ('OUT', 'queued', true), ('out ', 'queued', true), ('', 'sent', NULL),
			   ('out', 'Queued', true), ('out', 'queue', true), ('out', 'queuedx', true), ('out', 'pending', true),
			   ('out', '', NULL), ('in', 'sent ', NULL),
			   (NULL, 'sent', NULL), ('out', NULL, NULL), (NULL, NULL, NULL)) v(d, s, p);
-- As the table's check: a row whose pending disagrees with its status
-- cannot be written.
CREATE TEMP TABLE m (direction text, status text, pending boolean,
					 CHECK (eightms.message_state_ok(direction, status, pending)));
INSERT INTO m VALUES ('out', 'queued', true), ('in', 'received', NULL);
INSERT INTO m VALUES ('out', 'sent', true);
UPDATE m SET status = 'delivered' WHERE status = 'queued';
UPDATE m SET status = 'delivered', pending = NULL WHERE status = 'queued';
SELECT * FROM m ORDER BY direction DESC;
