// `stackbpf config check FILE` and `stackbpf config reference`.
import type { Command } from './command.js';

export const configCommand: Command = {
  summary: 'check a configuration file, or print the reference of every setting',
  usage: 'stackbpf config check FILE | stackbpf config reference',
  help: `check FILE   validate FILE as the agent would (before a SIGHUP, say): prints
             "ok" or the first bad setting with what is allowed; exit 1 when bad
reference    the table of every setting, its type, default and meaning
             (the same table as docs/configuration.md)`,
  options: { help: { type: 'boolean', short: 'h' } },
  async run(_values, positionals) {
    const { ConfigError, configReference, loadConfig } = await import('../config.js');
    const [what, file] = positionals;
    if (what === 'reference') {
      process.stdout.write(configReference());
      return 0;
    }
    if (what === 'check' && file) {
      try {
        loadConfig(file);
        process.stdout.write(`${file}: ok\n`);
        return 0;
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`${err.message}\n`);
        return 1;
      }
    }
    process.stderr.write(`usage: ${this.usage}\n`);
    return 2;
  },
};
