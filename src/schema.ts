// Building blocks of the configuration schema (zod). Each one carries the
// error an operator reads — `trace.capture_bytes: expected an integer
// 64..2048` — so messages are written here once, not per setting.
import { isIP } from 'node:net';
import { z } from 'zod';

const msg = (text: string) => ({ error: text });

/** An integer in [min, max]; with `def`, optional and defaulted. */
export function int(min: number, max: number, def?: number) {
  const m = `expected an integer ${min}..${max}`;
  const s = z.number(msg(m)).int(msg(m)).min(min, msg(m)).max(max, msg(m));
  return def === undefined ? s : s.default(def);
}

/** A number in [min, max]; with `def`, optional and defaulted. */
export function num(min: number, max: number, def?: number) {
  const m = `expected a number ${min}..${max}`;
  const s = z.number(msg(m)).min(min, msg(m)).max(max, msg(m));
  return def === undefined ? s : s.default(def);
}

export function bool(def: boolean) {
  return z.boolean(msg('expected true or false')).default(def);
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T, def: T[number]) {
  return z.enum(values, msg(`expected one of ${values.join(', ')}`)).default(def as never);
}

export function str() {
  return z.string(msg('expected a non-empty string')).min(1, msg('expected a non-empty string'));
}

export function list<T extends z.ZodType>(of: T) {
  return z.array(of, msg('expected a list'));
}

export function strList() {
  return list(z.string(msg('expected a string')).min(1, msg('expected a string')));
}

export function ipAddress(family?: 4 | 6) {
  return str().check((ctx) => {
    const f = isIP(ctx.value);
    if (family ? f !== family : f === 0)
      ctx.issues.push({ code: 'custom', input: ctx.value, message: family ? `expected an IPv${family} address` : `"${ctx.value}" is not an IP address` });
  });
}

/** A mapping whose unknown keys are refused with the known ones listed. */
export function section<S extends z.ZodRawShape>(shape: S) {
  const known = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `unknown setting (known: ${known})` : 'expected a mapping'),
  });
}

/** A section that may be left out: every setting in it then takes its default. */
export function defaultedSection<S extends z.ZodRawShape>(shape: S) {
  return section(shape).prefault({} as never);
}

/** snake_case → camelCase: a configuration key as the code reads it */
export function camelKey(k: string): string {
  return k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** snake_case → camelCase, for the configuration's keys as the code reads them */
export type Camel<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;
export type CamelDeep<T> = T extends readonly (infer E)[]
  ? CamelDeep<E>[]
  : T extends object
    ? { [K in keyof T as K extends string ? Camel<K> : K]: CamelDeep<T[K]> }
    : T;
