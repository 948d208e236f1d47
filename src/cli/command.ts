// One `stackbpf` subcommand: its help and what it runs. The core commands
// live in src/cli/; a capability module brings its own (ModuleDefinition.cli).
import type { parseArgs } from 'node:util';

export interface Command {
  summary: string;
  usage: string;
  help: string;
  options: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  run(values: Record<string, unknown>, positionals: string[]): Promise<number> | number;
}
