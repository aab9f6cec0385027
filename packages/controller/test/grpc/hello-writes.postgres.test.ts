// hello-writes.test.ts, every assertion, on a private PostgreSQL cluster (the link stack's store opened through store/fixtures/backend.ts): the hello's one statement there.
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./hello-writes.test'));
