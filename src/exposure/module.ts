// The exposure module: the XDP/TC data plane, exposures from the file, the
// API and OVN, and announcements through FRR. Offers `blocker` (the XDP
// blocklist in its maps) to the response module; /v1/exposures.
import { HttpError, prefixQuery, type Query } from '../api/http.js';
import { counterFrom, gaugeFrom } from '../api/metrics.js';
import type { Exposure } from '../dataplane/exposure.js';
import { defineModule } from '../module.js';
import { exposureSections } from './config.js';
import { ExposureController } from './controller.js';

/** one exposure (the fields of docs/configuration.md's exposures: list); values are checked by normalizeExposure */
const exposureBody = {
  type: 'object',
  additionalProperties: false,
  required: ['prefix', 'target', 'mac', 'owner'],
  properties: {
    prefix: { type: 'string' },
    target: { type: 'string' },
    mac: { type: 'string' },
    vlan: { type: 'integer' },
    owner: { type: 'string' },
    reason: { type: 'string' },
  },
} as const;

export const exposureModule = defineModule({
  name: 'exposure',
  summary: 'the XDP/TC data plane for BGP-exposed traffic: exposures from the file, the API and OVN, announced with FRR',
  sections: exposureSections,
  kernelObjects: ['dataplane'],
  subscribes: [],
  essential: true,
  enabled: (c) => c.dataplane.providerInterfaces.length > 0,
  offReason: 'the data plane is off (no dataplane.provider_interfaces in the configuration)',
  offStatus: () => ({ dataplane: 'off' as const }),
  async start(ctx) {
    const controller = await ExposureController.start({ ...ctx.core, ...ctx.config } as never, ctx.log);
    ctx.provide('blocker', {
      add: (rule) => {
        const id = controller.blocklist.add(rule);
        return { id, prefix: controller.blocklist.list().find((b) => b.id === id)?.prefix ?? rule.prefix };
      },
      remove: (prefix) => controller.blocklist.remove(prefix),
      list: () => controller.blocklist.list(),
    });
    return {
      controller,
      status: () => ({ dataplane: 'on' as const, ...controller.status() }),
      reload: (c: typeof ctx.config) => controller.reload(c as never),
      stop: () => controller.stop(),
    };
  },
  routes(app, m) {
    app.get('/v1/exposures', async () => m.get().controller.exposureReport());
    app.post<{ Body: unknown }>('/v1/exposures', { schema: { body: exposureBody } }, async (req, reply) => {
      const { controller } = m.get();
      const body = req.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'expected one exposure object');
      const result = await controller.apiPut(body as Exposure);
      return reply.code(201).send({ applied: result });
    });
    app.delete<{ Querystring: Query }>('/v1/exposures', { schema: { querystring: prefixQuery } }, async (req, reply) => {
      const { controller } = m.get();
      const prefix = req.query.prefix;
      if (!prefix) throw new HttpError(400, 'give ?prefix=ADDR[/LEN]');
      if (!(await controller.apiDelete(prefix))) throw new HttpError(404, `${prefix} was not added through the API`);
      return reply.code(204).send();
    });
  },
  metrics(registry, m) {
    const st = () => m.running()?.controller.status();
    gaugeFrom(registry, 'stackbpf_dataplane_exposures', 'Exposures installed in the XDP maps.', () => st()?.exposures);
    counterFrom(
      registry,
      'stackbpf_dataplane_packets_total',
      'Packets the XDP ingress program decided, by verdict.',
      () => {
        const s = st();
        return s && Object.entries(s.verdicts).map(([verdict, c]) => [{ verdict }, Number(c.packets)]);
      },
      ['verdict'],
    );
  },
});
