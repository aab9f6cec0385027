// events.test.ts, every assertion, on a private PostgreSQL cluster, plus two controller replicas on one database.
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./events.test'));
