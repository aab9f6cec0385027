// join-tokens.test.ts, every assertion, on a private PostgreSQL cluster.
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./join-tokens.test'));
