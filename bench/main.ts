// npm run bench -- NAME [--json] [options]: runs one benchmark; the last line
// of stdout is one JSON object with its figures.
import { parseArgs } from 'node:util';

type Bench = { summary: string; run(args: string[]): Promise<Record<string, unknown>> };

const benches: Record<string, () => Promise<Bench>> = {
  ringbuf: async () => (await import('./ringbuf.js')).bench,
  'xdp-cost': async () => (await import('./xdp-cost.js')).bench,
  fuzz: async () => (await import('./fuzz.js')).bench,
  forward: async () => (await import('./forward.js')).bench,
  convergence: async () => (await import('./convergence.js')).bench,
  'trace-overhead': async () => (await import('./trace-overhead.js')).bench,
  'trace-throughput': async () => (await import('./trace-throughput.js')).bench,
  detect: async () => (await import('./detect.js')).bench,
  robustness: async () => (await import('./robustness.js')).bench,
  accounting: async () => (await import('./accounting.js')).bench,
  diagnose: async () => (await import('./diagnose.js')).bench,
  'amqp-scan': async () => (await import('./amqp-scan.js')).bench,
  audit: async () => (await import('./audit.js')).bench,
  'sqli-corpus': async () => (await import('./sqli-corpus.js')).bench,
};

async function main(): Promise<number> {
  const [name, ...rest] = process.argv.slice(2);
  if (!name || name === '--help' || name === '-h' || !benches[name]) {
    const list = await Promise.all(Object.entries(benches).map(async ([n, b]) => `  ${n.padEnd(10)}${(await b()).summary}`));
    const out = `Usage: npm run bench -- NAME [--json] [options]\n\nBenchmarks:\n${list.join('\n')}\n`;
    if (name && name !== '--help' && name !== '-h') {
      process.stderr.write(`unknown benchmark "${name}"\n${out}`);
      return 2;
    }
    process.stdout.write(out);
    return 0;
  }
  const { values, tokens } = parseArgs({ args: rest, options: { json: { type: 'boolean' } }, strict: false, tokens: true });
  const passOn = tokens
    .filter((t) => !(t.kind === 'option' && t.name === 'json'))
    .flatMap((t) => ('rawName' in t ? [t.rawName, ...(t.value !== undefined && !t.inlineValue ? [t.value] : [])] : t.kind === 'positional' ? [t.value] : []));
  const result = await (await benches[name]()).run(passOn);
  if (!values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify({ bench: name, ...result })}\n`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
