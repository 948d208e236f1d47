// The event store's configuration section.
import { bool, defaultedSection, int, str } from '../schema.js';

export const storageSection = defaultedSection({
  enabled: bool(true),
  path: str().optional().describe('SQLite file, WAL mode (default: <state_dir>/events.db)'),
  retention_days: int(1, 3650, 7).describe('whole segments older than this are dropped'),
  max_size_mb: int(16, 1 << 20, 1024).describe('and the oldest segments while the file is over this'),
  queue_events: int(1000, 10_000_000, 200_000).describe('events waiting for the store before the tracer pauses reading'),
}).describe('where events are kept');
