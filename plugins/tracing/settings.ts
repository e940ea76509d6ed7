// What the plugin runs with: its options, else the standard OpenTelemetry environment variables
// (the ones users already set for every other service), else the specification's defaults. Kept
// apart from the plugin so the precedence can be tested with an environment of its own.
import { readFileSync } from 'node:fs';
import { parseKeyPairsIntoRecord } from '@opentelemetry/core';
import type { SpanLimitSettings } from './span.js';

export type Protocol = 'http/protobuf' | 'http/json';

/** The options as the schema lets them through (the env-backed ones have no schema default). */
export interface TracingOptions {
  compression?: 'gzip' | 'none';
  serviceName?: string;
  endpoint?: string;
  protocol?: Protocol;
  headers?: Record<string, string>;
  timeoutMs?: number;
  sampleRatio?: number;
  parentBased?: boolean;
  alwaysSampleErrors: boolean;
  b3: 'off' | 'single' | 'multi';
  batch: {
    scheduleDelayMs?: number;
    maxQueueSize: number;
    maxExportBatchSize: number;
    exportTimeoutMs: number;
  };
}

export interface TracingSettings {
  serviceName: string;
  /** The full URL spans are posted to (…/v1/traces). */
  url: string;
  protocol: Protocol;
  /** Sent with every export; may hold credentials: never logged. */
  headers: Record<string, string>;
  timeoutMs: number;
  /** The share of new traces (no sampled parent) that are recorded, 0 to 1. */
  sampleRatio: number;
  /** Follow the caller's sampled flag when a request carries a trace context. */
  parentBased: boolean;
  alwaysSampleErrors: boolean;
  b3: 'off' | 'single' | 'multi';
  scheduleDelayMs: number;
  maxQueueSize: number;
  maxExportBatchSize: number;
  exportTimeoutMs: number;
  limits: SpanLimitSettings;
  compression: 'gzip' | 'none';
  /** PEM read from the files the OTEL_EXPORTER_OTLP_*CERTIFICATE / *_CLIENT_KEY variables name. */
  tls: { ca?: string; cert?: string; key?: string };
}

/** The environment variables read, each named in a problem it causes. */
type Env = Readonly<Record<string, string | undefined>>;

/** A setting that cannot be used, named by where it came from. */
export class TracingSettingsError extends Error {}

const SIGNAL_PATH = 'v1/traces';

export function resolveSettings(options: TracingOptions, env: Env): TracingSettings {
  const sampler = options.sampleRatio !== undefined || options.parentBased !== undefined ? undefined : samplerFromEnv(env);
  const batchDelay = options.batch.scheduleDelayMs ?? numberFromEnv(env, 'OTEL_BSP_SCHEDULE_DELAY');
  return {
    serviceName: options.serviceName ?? nonEmpty(env.OTEL_SERVICE_NAME) ?? 'switchyard',
    url: options.endpoint ?? urlFromEnv(env),
    protocol: options.protocol ?? protocolFromEnv(env),
    // Per header, as the exporters do: the options' value over the environment's.
    headers: { ...parseKeyPairsIntoRecord(env.OTEL_EXPORTER_OTLP_HEADERS), ...parseKeyPairsIntoRecord(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS), ...options.headers },
    timeoutMs: options.timeoutMs ?? numberFromEnv(env, 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT') ?? numberFromEnv(env, 'OTEL_EXPORTER_OTLP_TIMEOUT') ?? 10_000,
    sampleRatio: options.sampleRatio ?? sampler?.ratio ?? 1,
    parentBased: options.parentBased ?? sampler?.parentBased ?? true,
    alwaysSampleErrors: options.alwaysSampleErrors,
    b3: options.b3,
    scheduleDelayMs: batchDelay ?? 5000,
    maxQueueSize: options.batch.maxQueueSize,
    maxExportBatchSize: Math.min(options.batch.maxExportBatchSize, options.batch.maxQueueSize),
    exportTimeoutMs: options.batch.exportTimeoutMs,
    limits: limitsFromEnv(env),
    compression: options.compression ?? compressionFromEnv(env),
    tls: {
      ca: pemFromEnv(env, 'OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE', 'OTEL_EXPORTER_OTLP_CERTIFICATE'),
      cert: pemFromEnv(env, 'OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE', 'OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE'),
      key: pemFromEnv(env, 'OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY', 'OTEL_EXPORTER_OTLP_CLIENT_KEY'),
    },
  };
}

function compressionFromEnv(env: Env): 'gzip' | 'none' {
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_COMPRESSION', 'OTEL_EXPORTER_OTLP_COMPRESSION']) {
    const value = nonEmpty(env[name]);
    if (value === undefined) continue;
    if (value === 'gzip' || value === 'none') return value;
    throw new TracingSettingsError(`${name} is "${value}"; expected gzip or none`);
  }
  return 'none';
}

/** The contents of the PEM file the signal's variable, else the general one, names. */
function pemFromEnv(env: Env, own: string, general: string): string | undefined {
  const name = nonEmpty(env[own]) !== undefined ? own : general;
  const path = nonEmpty(env[name]);
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new TracingSettingsError(`${name} names ${path}, which cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * What a span keeps: the OpenTelemetry SDK's span limits, from its variables with its precedence
 * (the span's own over the general attribute limits) and its defaults.
 */
function limitsFromEnv(env: Env): SpanLimitSettings {
  const limit = (name: string) => numberFromEnv(env, name, 'a whole number');
  return {
    attributeCountLimit: limit('OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT') ?? limit('OTEL_ATTRIBUTE_COUNT_LIMIT') ?? 128,
    attributeValueLengthLimit: limit('OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT') ?? limit('OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT') ?? Infinity,
    eventCountLimit: limit('OTEL_SPAN_EVENT_COUNT_LIMIT') ?? 128,
    attributePerEventCountLimit: limit('OTEL_SPAN_ATTRIBUTE_PER_EVENT_COUNT_LIMIT') ?? 128,
  };
}

/** The traces endpoint: the signal's own variable as it is, else the general one plus /v1/traces. */
function urlFromEnv(env: Env): string {
  const own = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  if (own !== undefined) return validUrl(own, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const general = nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  if (general !== undefined) {
    validUrl(general, 'OTEL_EXPORTER_OTLP_ENDPOINT');
    return `${general.endsWith('/') ? general : `${general}/`}${SIGNAL_PATH}`;
  }
  return `http://localhost:4318/${SIGNAL_PATH}`;
}

function validUrl(value: string, name: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TracingSettingsError(`${name} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TracingSettingsError(`${name} must be an http:// or https:// URL`);
  return value;
}

function protocolFromEnv(env: Env): Protocol {
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const value = nonEmpty(env[name]);
    if (value === undefined) continue;
    if (value === 'http/protobuf' || value === 'http/json') return value;
    throw new TracingSettingsError(`${name} is "${value}"; this exporter speaks http/protobuf or http/json`);
  }
  return 'http/protobuf';
}

/** OTEL_TRACES_SAMPLER and its argument, as the specification names them. */
function samplerFromEnv(env: Env): { ratio: number; parentBased: boolean } | undefined {
  const name = nonEmpty(env.OTEL_TRACES_SAMPLER);
  if (name === undefined) return undefined;
  const ratio = () => {
    const arg = nonEmpty(env.OTEL_TRACES_SAMPLER_ARG);
    if (arg === undefined) return 1;
    const value = Number(arg);
    if (!Number.isFinite(value) || value < 0 || value > 1) throw new TracingSettingsError(`OTEL_TRACES_SAMPLER_ARG is "${arg}"; a ratio is a number from 0 to 1`);
    return value;
  };
  switch (name) {
    case 'always_on': return { ratio: 1, parentBased: false };
    case 'always_off': return { ratio: 0, parentBased: false };
    case 'traceidratio': return { ratio: ratio(), parentBased: false };
    case 'parentbased_always_on': return { ratio: 1, parentBased: true };
    case 'parentbased_always_off': return { ratio: 0, parentBased: true };
    case 'parentbased_traceidratio': return { ratio: ratio(), parentBased: true };
    default:
      throw new TracingSettingsError(`OTEL_TRACES_SAMPLER is "${name}"; use always_on, always_off, traceidratio or their parentbased_ forms`);
  }
}

function numberFromEnv(env: Env, name: string, expected = 'a whole number of milliseconds'): number | undefined {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new TracingSettingsError(`${name} is "${raw}"; expected ${expected}`);
  return value;
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}

/** The URL as it may be logged: no user info, no query (either may carry a credential). */
export function shownUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
}
