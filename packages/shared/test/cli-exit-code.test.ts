import t from 'tap';
import { cliExitCode } from '../src/cli/exit-code';
import { BulkheadError } from '../src/errors/registry';

t.test('exit codes shared by the daemon CLIs', async (t) => {
  const out: string[] = [];
  const err = (s: string) => out.push(s);
  t.equal(cliExitCode(new BulkheadError('BK_ERR_CONFIG_INVALID', 'bad flag'), err), 2);
  t.equal(cliExitCode(new BulkheadError('BK_ERR_TOKEN_USED'), err), 1);
  t.equal(cliExitCode(Object.assign(new Error('help'), { code: 'commander.helpDisplayed', exitCode: 0 }), err), 0);
  t.equal(cliExitCode(Object.assign(new Error('x'), { code: 'commander.unknownOption', exitCode: 1 }), err), 2);
  t.equal(cliExitCode(new Error('boom'), err), 1);
  t.same(out, ['error: BK_ERR_CONFIG_INVALID: bad flag\n', 'error: BK_ERR_TOKEN_USED: join token was already used\n', 'error: boom\n'], 'commander errors print nothing more');
});
