// `stackbpf agent`: run the agent until SIGTERM / SIGINT; SIGHUP reloads the
// exposures of the configuration file.
import { Agent } from '../agent.js';
import { startApi } from '../api/server.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../log.js';

export async function runAgent(configFile: string): Promise<number> {
  const config = loadConfig(configFile);
  const log = createLogger({ level: config.logLevel });
  const agent = await Agent.start(config, log);
  const api = await startApi(agent, config.api.listen, log);
  process.on('SIGHUP', () => {
    try {
      agent.reload(loadConfig(configFile));
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
  await new Promise<void>((r) => api.close(() => r()));
  await agent.stop();
  return 0;
}
