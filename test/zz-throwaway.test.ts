import t from 'tap'
import { parseDuration } from '../packages/shared/src/config/duration.js'
const x: number = 1
t.equal(x, 1, 'ts works')
t.ok(typeof parseDuration, 'import .js->.ts')
