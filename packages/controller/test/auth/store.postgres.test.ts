// store.test.ts (keys, join tokens, the 0004_auth backfill), every assertion, on a private PostgreSQL cluster.
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./store.test'));
