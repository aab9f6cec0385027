// sessions.test.ts, every assertion, on a private PostgreSQL cluster (the session store in PostgreSQL).
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./sessions.test'));
