export { VERSION } from '@bulkhead/client';
