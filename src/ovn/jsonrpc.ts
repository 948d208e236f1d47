// JSON-RPC 1.0 framing as OVSDB uses it (RFC 7047 §4): a stream of JSON
// texts with no delimiter between them. The splitter finds where each text
// ends by counting brackets outside strings, so a message split over many
// reads, or many messages in one read, come out whole, and a peer that never
// closes a bracket is cut off at a size limit instead of growing the buffer
// without bound.

export class FramingError extends Error {
  constructor(
    message: string,
    readonly complete: string[] = [],
  ) {
    super(message);
    this.name = 'FramingError';
  }
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Splits a byte stream into complete JSON texts. Only objects and arrays are
 * accepted at the top level (every JSON-RPC message is an object); anything
 * else between messages other than white space is a framing error.
 */
export class JsonStreamSplitter {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;

  constructor(private readonly maxMessageBytes: number) {}

  /**
   * Feed bytes; returns the complete JSON texts they finished, in order.
   * Throws a FramingError when the stream is unusable; the texts completed
   * before the bad byte are on the error (`complete`), so none is lost.
   */
  push(data: Buffer): string[] {
    const out: string[] = [];
    let start = 0;
    for (let i = 0; i < data.length; i++) {
      const c = data[i] as number;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) this.inString = false;
        continue;
      }
      if (this.depth === 0) {
        if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
          if (this.buffered === 0) start = i + 1;
          continue;
        }
        if (c !== OPEN_BRACE && c !== OPEN_BRACKET) {
          this.reset();
          throw new FramingError(
            `expected '{' at the start of a message, got byte 0x${c.toString(16).padStart(2, '0')} (${JSON.stringify(data.subarray(i, i + 40).toString('utf8'))}...)`,
            out,
          );
        }
      }
      if (c === QUOTE) this.inString = true;
      else if (c === OPEN_BRACE || c === OPEN_BRACKET) this.depth++;
      else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        this.depth--;
        if (this.depth === 0) {
          const part = data.subarray(start, i + 1);
          if (this.buffered > 0) {
            this.chunks.push(part);
            out.push(Buffer.concat(this.chunks).toString('utf8'));
            this.chunks = [];
            this.buffered = 0;
          } else out.push(part.toString('utf8'));
          start = i + 1;
        }
      }
    }
    if (this.depth > 0 || this.inString) {
      const rest = data.subarray(start);
      this.buffered += rest.length;
      if (this.buffered > this.maxMessageBytes) {
        this.reset();
        throw new FramingError(`message larger than the limit of ${this.maxMessageBytes} bytes (raise ovn.max_message_mb if the database is that large)`, out);
      }
      this.chunks.push(Buffer.from(rest));
    }
    return out;
  }

  /** Bytes held for an incomplete message. */
  pending(): number {
    return this.buffered;
  }

  reset(): void {
    this.chunks = [];
    this.buffered = 0;
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
  }
}
