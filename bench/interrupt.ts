// Ctrl-C (or SIGTERM) during a benchmark: the daemons, namespaces and
// directories it set up are torn down before it exits, as its own finally
// blocks would have done.
const hooks: (() => Promise<unknown>)[] = [];
let stopping = false;

/** Run `fn` if the benchmark is interrupted; the returned function forgets it. */
export function onInterrupt(fn: () => Promise<unknown>): () => void {
  hooks.push(fn);
  return () => {
    const i = hooks.indexOf(fn);
    if (i >= 0) hooks.splice(i, 1);
  };
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`bench: ${sig}: cleaning up\n`);
    void (async () => {
      for (const fn of hooks.splice(0).reverse()) await fn().catch((e: Error) => process.stderr.write(`bench: cleanup: ${e.message}\n`));
      process.exit(130);
    })();
  });
}
