// usage-history.test.ts, every assertion, on a private PostgreSQL cluster (the store under test/fixtures opened through store/fixtures/backend.ts).
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./usage-history.test'));
