// `stackbpf agent`: run the agent until SIGTERM / SIGINT; SIGHUP reloads the
// exposures of the configuration file and the service profiles. Without a file, the defaults: tracing
// and event storage on, the data plane off, the API on the unix socket /run/stackbpf/api.sock.
import { startApi } from '../api/server.js';
import { loadConfig, parseConfig, type StackbpfConfig } from '../config.js';
import { Daemon } from '../daemon.js';
import { createLogger } from '../log.js';

export async function runAgent(configFile: string | undefined): Promise<number> {
  const config: StackbpfConfig = configFile ? loadConfig(configFile) : parseConfig({});
  const log = createLogger({ level: config.logLevel });
  if (!configFile) log.info('no configuration file: tracing with the defaults, data plane off', { api: config.api.listen, store: config.storage.path });
  const daemon = await Daemon.start(config, log);
  let api: Awaited<ReturnType<typeof startApi>>;
  try {
    api = await startApi(
      daemon,
      { listen: config.api.listen, group: config.api.group, groupScopes: config.api.groupScopes, tokensFile: config.api.tokensFile },
      log,
    );
  } catch (err) {
    await daemon.stop();
    throw new Error(`api.listen ${config.api.listen}: ${(err as Error).message}`);
  }
  process.on('SIGHUP', () => {
    try {
      daemon.reload(configFile ? loadConfig(configFile) : parseConfig({}));
      log.info('configuration reloaded', { file: configFile });
    } catch (err) {
      log.error('reload refused, keeping the running configuration', { error: (err as Error).message });
    }
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info('stopping', { signal });
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await api.close();
  await daemon.stop();
  return 0;
}
