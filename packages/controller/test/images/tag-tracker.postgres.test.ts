// tag-tracker.test.ts, every assertion, on a private PostgreSQL cluster (the image_tags SQL is shared).
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./tag-tracker.test'));
