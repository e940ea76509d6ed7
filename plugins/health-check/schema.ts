// The health check's options (README.md, "Options"); the core checks them and fills in the defaults
// before setup, and checker.ts derives its options type from them.

export const schema = {
  type: 'object',
  properties: {
    active: {
      type: 'object',
      description: 'Probes on an interval; present means on.',
      properties: {
        enabled: { type: 'boolean', default: true },
        interval: { type: 'integer', minimum: 10, default: 10000 },
        timeout: { type: 'integer', minimum: 1, default: 2000 },
        path: { type: 'string', pattern: '^/', default: '/' },
        method: { type: 'string', enum: ['GET', 'HEAD', 'OPTIONS', 'POST'], default: 'GET' },
        headers: { type: 'object', additionalProperties: { type: 'string' }, default: {} },
        expectedStatuses: { type: 'array', items: { type: 'string', pattern: '^[1-5]([0-9]{2}|xx)$' }, minItems: 1, default: ['2xx', '3xx'] },
        bodyMatch: { type: 'string', minLength: 1, description: 'A regular expression the body must match.' },
        contentType: { type: 'string', minLength: 1, description: 'e.g. image/* or application/json' },
        healthyThreshold: { type: 'integer', minimum: 1, default: 2 },
        unhealthyThreshold: { type: 'integer', minimum: 1, default: 3 },
        jitter: { type: 'number', minimum: 0, maximum: 1, default: 0.1 },
      },
      additionalProperties: false,
    },
    passive: {
      type: 'object',
      properties: {
        enabled: { type: 'boolean', default: true },
        failures: { type: 'integer', minimum: 1, default: 3 },
        window: { type: 'integer', minimum: 1, default: 30000 },
        unhealthyTimeout: { type: 'integer', minimum: 1, default: 30000 },
        statuses: { type: 'array', items: { type: 'integer', minimum: 500, maximum: 599 }, default: [500, 502, 503, 504] },
      },
      additionalProperties: false,
      default: {},
    },
  },
  additionalProperties: false,
} as const;
