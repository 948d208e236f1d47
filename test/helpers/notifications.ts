// OpenStack's own audit, as it arrives on RabbitMQ: Keystone's CADF
// notifications and keystonemiddleware's audit.http.* events, collected by a
// private queue bound to the services' notification exchanges (it takes
// nothing from any other consumer), unwrapped from oslo.messaging's envelope.
import amqp from 'amqplib';

export interface Notification {
  event_type: string;
  publisher_id: string;
  payload: Record<string, any>;
}

export class NotificationTap {
  readonly got: Notification[] = [];
  private constructor(private readonly conn: amqp.ChannelModel) {}

  /** transport: rabbit://user:pass@host:port/ (as oslo writes it) */
  static async start(transport: string, exchanges = ['keystone', 'neutron', 'openstack']): Promise<NotificationTap> {
    const conn = await amqp.connect(transport.replace(/^rabbit:/, 'amqp:'));
    const tap = new NotificationTap(conn);
    const ch = await conn.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    for (const x of exchanges) {
      // as oslo.messaging declares them: topic, not durable
      await ch.assertExchange(x, 'topic', { durable: false });
      await ch.bindQueue(q.queue, x, 'notifications.#');
    }
    await ch.consume(
      q.queue,
      (m) => {
        if (!m) return;
        let body = JSON.parse(m.content.toString('utf8'));
        if (typeof body['oslo.message'] === 'string') body = JSON.parse(body['oslo.message']);
        tap.got.push(body as Notification);
      },
      { noAck: true },
    );
    return tap;
  }

  /** Keystone's CADF events and keystonemiddleware's responses (the audit events with an outcome). */
  audits(): Notification[] {
    return this.got.filter((n) => n.payload?.typeURI === 'http://schemas.dmtf.org/cloud/audit/1.0/event' && n.event_type !== 'audit.http.request');
  }

  async stop(): Promise<void> {
    await this.conn.close().catch(() => undefined);
  }
}
