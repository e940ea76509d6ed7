// The balancer's options (README.md, "Options"); the core checks them and fills in the defaults
// before setup, and balancer.ts derives its options type from them.
import { ALGORITHMS } from './algorithms.js';

const algorithm = { type: 'string', enum: ALGORITHMS } as const;

export const schema = {
  type: 'object',
  properties: {
    algorithm: { ...algorithm, default: 'round-robin' },
    streamingAlgorithm: { ...algorithm, description: 'Used instead for WebSocket upgrades and SSE requests (Accept: text/event-stream).' },
    hashKey: { type: 'string', minLength: 1, description: 'header-hash: the header; cookie-hash: the cookie.' },
    hashReplicas: { type: 'integer', minimum: 1, maximum: 10000, default: 160 },
    maxConnections: { type: 'integer', minimum: 0, default: 0, description: 'Per upstream, 0 = unlimited; meta.maxConnections overrides.' },
    failFast: { type: 'boolean', default: false, description: 'With no healthy upstream answer 503 at once instead of spreading over all (panic mode).' },
    slowStart: {
      type: 'object',
      properties: {
        duration: { type: 'integer', minimum: 0, default: 0 },
        minWeightPercent: { type: 'number', minimum: 1, maximum: 100, default: 10 },
        aggression: { type: 'number', exclusiveMinimum: 0, default: 1 },
      },
      additionalProperties: false,
      default: {},
    },
    latency: {
      type: 'object',
      properties: {
        formula: {
          type: 'string', enum: ['peak-ewma', 'tmdb-proxy'], default: 'peak-ewma',
          description: 'peak-ewma: the lowest EWMA latency × (in flight + 1) ÷ weight; tmdb-proxy: the TMDB proxy\'s dynamic weights, picked by probability.',
        },
        decayTime: { type: 'integer', minimum: 10, maximum: 600000, default: 500, description: 'peak-ewma: ms in which an old sample fades and an idle upstream\'s latency decays, so it is re-measured.' },
        baseWeightMultiplier: { type: 'number', exclusiveMinimum: 0, default: 20 },
        dynamicWeightMultiplier: { type: 'number', exclusiveMinimum: 0, default: 50 },
        alphaInitial: { type: 'number', minimum: 0, maximum: 1, default: 0.5 },
        alphaAdjustmentStep: { type: 'number', minimum: 0, maximum: 1, default: 0.05 },
        alphaMin: { type: 'number', minimum: 0, maximum: 1, default: 0.1 },
        alphaMax: { type: 'number', minimum: 0, maximum: 1, default: 0.9 },
        ewmaDecay: { type: 'number', minimum: 0, exclusiveMaximum: 1, default: 0.8 },
        baseDecay: { type: 'number', minimum: 0, exclusiveMaximum: 1, default: 0.98 },
        maxWeight: { type: 'number', minimum: 1, default: 100 },
        failurePenalty: { type: 'integer', minimum: 1, default: 5000 },
      },
      additionalProperties: false,
      default: {},
    },
    dns: {
      type: 'object',
      description: 'Upstreams marked `discover` (dns+http://…): how often their names are looked up again, ms. The answer\'s TTL decides, held within these bounds.',
      properties: {
        minTtl: { type: 'integer', minimum: 100, default: 1000, description: 'Never sooner than this; also the retry delay after a failed lookup.' },
        maxTtl: { type: 'integer', minimum: 100, default: 300000, description: 'Never later than this (SRV records carry no TTL Node can read: their targets\' address TTLs count).' },
      },
      additionalProperties: false,
      default: {},
    },
    refreshInterval: {
      type: 'integer', minimum: 0, default: 1000,
      description: 'How often runtime upstream changes are read back from the store (ms), so instances sharing a store (redis://) follow each other; 0 = only at start.',
    },
    reports: {
      type: 'object',
      properties: {
        enabled: { type: 'boolean', default: false },
        ttl: { type: 'integer', minimum: 1, default: 30000 },
      },
      additionalProperties: false,
      default: {},
    },
  },
  additionalProperties: false,
  allOf: [
    { if: { properties: { algorithm: { enum: ['header-hash', 'cookie-hash'] } }, required: ['algorithm'] }, then: { required: ['hashKey'] } },
    { if: { properties: { streamingAlgorithm: { enum: ['header-hash', 'cookie-hash'] } }, required: ['streamingAlgorithm'] }, then: { required: ['hashKey'] } },
  ],
} as const;
