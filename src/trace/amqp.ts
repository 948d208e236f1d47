// AMQP 0-9-1 (RabbitMQ), as OpenStack's services speak it through
// oslo.messaging, kombu and py-amqp: frames rebuilt from what the tracer
// captured of each syscall on a framed connection (the kernel starts a new
// message per syscall there, and sends the window after "_msg_id" or
// "_unique_id" when the message is longer than the capture), then the content
// messages (Basic.Publish / Basic.Deliver + header + body) with the ids
// oslo.messaging puts in the body:
//   a call:  {"method": M, "args": …, "_msg_id": ID, "_reply_q": Q, "_unique_id": U, "_context_…"}
//   a cast:  {"method": M, "args": …, "_unique_id": U, …}
//   a reply: {"result": …, "failure": …, "ending": true, "_msg_id": ID, "_unique_id": U}
// inside the envelope {"oslo.version": "2.0", "oslo.message": "<that, as a JSON string>"}.
// Nothing of a message's arguments or results is kept: only the method name,
// the ids, the exchange and the routing key.

export const FRAME_METHOD = 1;
export const FRAME_HEADER = 2;
export const FRAME_BODY = 3;
export const FRAME_HEARTBEAT = 8;
const FRAME_END = 0xce;
/** a frame bigger than this is not believed (RabbitMQ's frame_max is 128 KiB by default) */
const MAX_FRAME = 1 << 24;
/** body bytes kept per content message */
const BODY_KEEP = 2048;

/** Bytes of one syscall: what was captured from its start, windows captured further on, its size. */
export interface Chunk {
  data: Buffer;
  /** the syscall's size, when known (exact) */
  total: number;
  exact: boolean;
  windows: { offset: number; data: Buffer }[];
}

export interface Frame {
  type: number;
  channel: number;
  size: number;
  /** the captured start of the payload */
  payload: Buffer;
  /** windows inside the payload (offsets within it) */
  windows: { offset: number; data: Buffer }[];
  truncated: boolean;
}

/**
 * One direction of a connection: frames from a run of syscalls. A byte the
 * capture missed where a frame header should be puts the stream out of step;
 * it steps back in at a syscall that starts like a frame (py-amqp reads a
 * frame's 7-byte header with one recv and writes whole frames with one send).
 */
export class FrameStream {
  private hdr = Buffer.alloc(0);
  private cur: (Frame & { got: number; kept: number; gap: boolean }) | undefined;
  private needEnd = false;
  private lost = false;
  private started = false;
  /** times the stream lost step */
  desyncs = 0;

  constructor(private readonly client: boolean) {}

  feed(c: Chunk, out: (f: Frame) => void): void {
    let p = 0;
    // a syscall whose size is not known (its message ended idle): it ends with the frame it is in
    const total = c.exact ? c.total : Number.POSITIVE_INFINITY;
    if (!this.started) {
      this.started = true;
      // a client's first bytes: the protocol header
      if (this.client && c.data.length >= 8 && c.data.toString('latin1', 0, 4) === 'AMQP') p = 8;
    }
    if (this.lost) {
      if (!startsFrame(c)) return;
      this.lost = false;
      this.reset();
    }
    const emit = (): void => {
      const f = this.cur as NonNullable<typeof this.cur>;
      this.cur = undefined;
      this.needEnd = false;
      out({ type: f.type, channel: f.channel, size: f.size, payload: f.payload, windows: f.windows, truncated: f.gap });
    };
    while (p < total) {
      if (this.needEnd) {
        if (p >= c.data.length) {
          // past the capture (a big frame's tail): the end byte is taken on trust, as the
          // frame's length put it there
          p++;
          emit();
          if (!c.exact) return;
          continue;
        }
        if (c.data[p] !== FRAME_END) {
          this.desync();
          return;
        }
        p++;
        emit();
        continue;
      }
      if (!this.cur) {
        const need = 7 - this.hdr.length;
        const have = Math.min(c.data.length, total) - p;
        if (have <= 0) {
          if (c.exact) this.desync();
          return;
        }
        const take = Math.min(need, have);
        this.hdr = Buffer.concat([this.hdr, c.data.subarray(p, p + take)]);
        p += take;
        if (this.hdr.length < 7) {
          if (p < total && p >= c.data.length && c.exact) this.desync();
          return;
        }
        const type = this.hdr[0] as number;
        const size = this.hdr.readUInt32BE(3);
        if (![FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT].includes(type) || size > MAX_FRAME) {
          this.desync();
          return;
        }
        this.cur = { type, channel: this.hdr.readUInt16BE(1), size, payload: Buffer.alloc(0), windows: [], truncated: false, got: 0, kept: 0, gap: false };
        this.hdr = Buffer.alloc(0);
        if (size === 0) this.needEnd = true;
        continue;
      }
      const f = this.cur;
      const n = Math.min(f.size - f.got, total - p);
      const capEnd = Math.min(p + n, c.data.length);
      if (capEnd > p && !f.gap && f.kept < BODY_KEEP) {
        const part = c.data.subarray(p, Math.min(capEnd, p + BODY_KEEP - f.kept));
        f.payload = f.payload.length ? Buffer.concat([f.payload, part]) : Buffer.from(part);
        f.kept += part.length;
      }
      if (capEnd < p + n) f.gap = true;
      for (const w of c.windows) {
        if (w.offset >= p && w.offset < p + n) f.windows.push({ offset: f.got + (w.offset - p), data: w.data.subarray(0, p + n - w.offset) });
      }
      f.got += n;
      p += n;
      if (f.got === f.size) this.needEnd = true;
    }
  }

  /** Met mid-stream: wait for a syscall that starts a frame. */
  stepOut(): void {
    this.started = true;
    this.lost = true;
  }

  private reset(): void {
    this.hdr = Buffer.alloc(0);
    this.cur = undefined;
    this.needEnd = false;
  }

  private desync(): void {
    this.reset();
    this.lost = true;
    this.desyncs++;
  }
}

/** Does this syscall's data start like a frame? */
function startsFrame(c: Chunk): boolean {
  if (c.data.length < 7) return false;
  const type = c.data[0] as number;
  if (![FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT].includes(type)) return false;
  const size = c.data.readUInt32BE(3);
  if (size > MAX_FRAME) return false;
  if (c.exact && c.total === 7) return true;
  return 8 + size > c.data.length || c.data[7 + size] === FRAME_END;
}

// ---- content messages ------------------------------------------------------

export interface AmqpContent {
  kind: 'publish' | 'deliver';
  channel: number;
  exchange: string;
  routingKey: string;
  bodySize: number;
  /** AMQP properties other clients use for RPC */
  correlationId?: string;
  replyTo?: string;
  body: Buffer;
  windows: { offset: number; data: Buffer }[];
  /** the body was not captured whole */
  truncated: boolean;
}

function shortstr(b: Buffer, p: number): [string, number] | undefined {
  const n = b[p];
  if (n === undefined || p + 1 + n > b.length) return undefined;
  return [b.toString('utf8', p + 1, p + 1 + n), p + 1 + n];
}

/** Method frames that begin a content message (Basic.Publish 60/40, Basic.Deliver 60/60, Basic.Return 60/50, Basic.GetOk 60/71). */
export function parseContentMethod(payload: Buffer): Pick<AmqpContent, 'kind' | 'exchange' | 'routingKey'> | 'other' | undefined {
  if (payload.length < 4) return undefined;
  const cls = payload.readUInt16BE(0);
  const method = payload.readUInt16BE(2);
  if (cls !== 60 || ![40, 50, 60, 71].includes(method)) return 'other';
  let p = 4;
  if (method === 40) {
    p += 2; // reserved-1
    const ex = shortstr(payload, p);
    if (!ex) return undefined;
    const rk = shortstr(payload, ex[1]);
    if (!rk) return undefined;
    return { kind: 'publish', exchange: ex[0], routingKey: rk[0] };
  }
  if (method === 60) {
    const tag = shortstr(payload, p);
    if (!tag) return undefined;
    p = tag[1] + 8 + 1; // delivery-tag, redelivered
    const ex = shortstr(payload, p);
    if (!ex) return undefined;
    const rk = shortstr(payload, ex[1]);
    if (!rk) return undefined;
    return { kind: 'deliver', exchange: ex[0], routingKey: rk[0] };
  }
  // Basic.Return (reply-code, reply-text, exchange, routing-key) and Basic.GetOk: content that is not a delivery we time
  return 'other';
}

/** The content header: the body's size and the properties an RPC may use. */
export function parseContentHeader(payload: Buffer): { bodySize: number; correlationId?: string; replyTo?: string } | undefined {
  if (payload.length < 14) return undefined;
  const bodySize = Number(payload.readBigUInt64BE(4));
  const flags = payload.readUInt16BE(12);
  const out: { bodySize: number; correlationId?: string; replyTo?: string } = { bodySize };
  let p = 14;
  const str = (): string | undefined => {
    const s = shortstr(payload, p);
    if (!s) return undefined;
    p = s[1];
    return s[0];
  };
  // properties in order, each present when its flag bit (15 down) is set
  if (flags & 0x8000 && str() === undefined) return out; // content-type
  if (flags & 0x4000 && str() === undefined) return out; // content-encoding
  if (flags & 0x2000) {
    // headers: a field table, skipped by its length
    if (p + 4 > payload.length) return out;
    p += 4 + payload.readUInt32BE(p);
  }
  if (flags & 0x1000) p += 1; // delivery-mode
  if (flags & 0x0800) p += 1; // priority
  if (flags & 0x0400) {
    const v = str();
    if (v === undefined) return out;
    out.correlationId = v;
  }
  if (flags & 0x0200) {
    const v = str();
    if (v !== undefined) out.replyTo = v;
  }
  return out;
}

/** Content messages of one direction of a connection, per channel. */
export class ContentAssembler {
  private readonly open = new Map<number, AmqpContent & { got: number }>();

  /** Returns the content message a frame completed, if any. */
  frame(f: Frame): AmqpContent | undefined {
    if (f.type === FRAME_METHOD) {
      const m = parseContentMethod(f.payload);
      if (m && m !== 'other')
        this.open.set(f.channel, { ...m, channel: f.channel, bodySize: -1, body: Buffer.alloc(0), windows: [], truncated: f.truncated, got: 0 });
      else this.open.delete(f.channel);
      return undefined;
    }
    const c = this.open.get(f.channel);
    if (!c) return undefined;
    if (f.type === FRAME_HEADER) {
      const h = parseContentHeader(f.payload);
      if (!h) {
        this.open.delete(f.channel);
        return undefined;
      }
      c.bodySize = h.bodySize;
      if (h.correlationId !== undefined) c.correlationId = h.correlationId;
      if (h.replyTo !== undefined) c.replyTo = h.replyTo;
      if (c.bodySize === 0) return this.done(c);
      return undefined;
    }
    if (f.type === FRAME_BODY && c.bodySize >= 0) {
      if (c.body.length === c.got && c.body.length < BODY_KEEP) c.body = Buffer.concat([c.body, f.payload]).subarray(0, BODY_KEEP);
      for (const w of f.windows) c.windows.push({ offset: c.got + w.offset, data: w.data });
      if (f.truncated || f.payload.length < f.size) c.truncated = true;
      c.got += f.size;
      if (c.got >= c.bodySize) return this.done(c);
    }
    return undefined;
  }

  private done(c: AmqpContent & { got: number }): AmqpContent {
    this.open.delete(c.channel);
    const { got: _got, ...out } = c;
    return out;
  }
}

// ---- oslo.messaging --------------------------------------------------------

export interface OsloMessage {
  kind: 'call' | 'cast' | 'reply' | 'notification';
  method?: string;
  msgId?: string;
  replyQ?: string;
  uniqueId?: string;
  /** a reply that carries a remote exception */
  failure?: boolean;
  eventType?: string;
}

/** A key of the message inside its JSON-string envelope: "\"_msg_id\": \"…\"" (or unescaped, without the envelope). */
function field(text: string, key: string, value = '[A-Za-z0-9_.:-]{1,128}'): string | undefined {
  // a window starts at the key itself, without its opening quote
  const re = new RegExp(`(?:\\\\?"|^)${key}\\\\?"\\s*:\\s*\\\\?"(${value})\\\\?"`, 'm');
  return re.exec(text)?.[1];
}

/** What oslo.messaging put in a body: the kind, the method, the ids. undefined: not an oslo.messaging message. */
export function parseOslo(c: Pick<AmqpContent, 'body' | 'windows'>): OsloMessage | undefined {
  const head = c.body.toString('utf8');
  const enveloped = /^\s*\{\s*"oslo\.version"\s*:/.test(head) || /"oslo\.message"\s*:/.test(head.slice(0, 64));
  if (!enveloped && !/^\s*\{\s*"(method|result|failure|_msg_id|message_id)"\s*:/.test(head)) return undefined;
  const text = [head, ...c.windows.map((w) => w.data.toString('utf8'))].join('\n');
  // the message proper starts inside the envelope's string
  const inner = enveloped ? head.slice(head.indexOf('oslo.message')) : head;
  const out: OsloMessage = { kind: 'cast' };
  const msgId = field(text, '_msg_id', '[0-9a-f]{32}');
  const replyQ = field(text, '_reply_q');
  const uniqueId = field(text, '_unique_id', '[0-9a-f]{32}');
  if (msgId) out.msgId = msgId;
  if (replyQ) out.replyQ = replyQ;
  if (uniqueId) out.uniqueId = uniqueId;
  if (/^[^{]*\{\s*\\?"(result|failure|ending)\\?"\s*:/.test(inner)) {
    out.kind = 'reply';
    if (/\\?"failure\\?"\s*:\s*(\\?"|\{|\[)/.test(text)) out.failure = true;
    return out;
  }
  const eventType = field(inner, 'event_type');
  if (eventType && /\\?"publisher_id\\?"/.test(inner)) {
    out.kind = 'notification';
    out.eventType = eventType;
    return out;
  }
  const method = field(inner, 'method', '[A-Za-z0-9_]{1,128}');
  if (method) out.method = method;
  if (msgId && replyQ) out.kind = 'call';
  return out;
}
