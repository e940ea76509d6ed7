// The attribute names on the plugin's spans. Those of OpenTelemetry's semantic conventions are
// spelled here rather than imported: imported from this ES module, the conventions package loads
// its ES build, a second copy beside the CommonJS one @opentelemetry/core requires, 0.68 MB of
// heap for seventeen strings, and the heap's size is a cost every request pays (bench/README.md).
// A test holds each equal to the package's constant.

// Stable: HTTP, URL, network, client, server, error, service.
export const ATTR_CLIENT_ADDRESS = 'client.address';
export const ATTR_ERROR_TYPE = 'error.type';
export const ATTR_HTTP_REQUEST_METHOD = 'http.request.method';
export const ATTR_HTTP_REQUEST_METHOD_ORIGINAL = 'http.request.method_original';
export const ATTR_HTTP_REQUEST_RESEND_COUNT = 'http.request.resend_count';
export const ATTR_HTTP_RESPONSE_STATUS_CODE = 'http.response.status_code';
export const ATTR_HTTP_ROUTE = 'http.route';
export const ATTR_NETWORK_PROTOCOL_VERSION = 'network.protocol.version';
export const ATTR_SERVER_ADDRESS = 'server.address';
export const ATTR_SERVER_PORT = 'server.port';
export const ATTR_SERVICE_NAME = 'service.name';
export const ATTR_URL_FULL = 'url.full';
export const ATTR_URL_PATH = 'url.path';
export const ATTR_URL_SCHEME = 'url.scheme';
export const ATTR_USER_AGENT_ORIGINAL = 'user_agent.original';

// Development in the conventions (the package's incubating entry point).
export const ATTR_HTTP_REQUEST_BODY_SIZE = 'http.request.body.size';
export const ATTR_HTTP_RESPONSE_BODY_SIZE = 'http.response.body.size';

// The proxy's own.
export const ATTR_SWITCHYARD_REQUEST_ID = 'switchyard.request_id';
export const ATTR_SWITCHYARD_UPSTREAM = 'switchyard.upstream';
export const ATTR_SWITCHYARD_ERROR_CODE = 'switchyard.error.code';
export const ATTR_SWITCHYARD_ATTEMPT_OUTCOME = 'switchyard.attempt.outcome';
export const ATTR_SWITCHYARD_STAGE = 'switchyard.stage';
