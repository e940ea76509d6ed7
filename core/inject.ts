// In-process requests (`api.inject()`): a request object and a response that records what is
// written, made by light-my-request (fastify's inject), handed to the same dispatch as a
// socket's. No port, no TLS, no loopback hop: a plugin asking another route or admin path of this
// proxy goes through every check a client's request would meet.
import type { IncomingMessage, ServerResponse } from 'node:http';
import inject from 'light-my-request';
import type { InjectRequest, InjectResponse } from './plugin.js';

export type Dispatch = (req: IncomingMessage, res: ServerResponse) => void;

/** Runs `request` through `dispatch` and resolves with the whole answer. */
export async function injectRequest(dispatch: Dispatch, request: InjectRequest): Promise<InjectResponse> {
  const answer = await inject(dispatch, {
    // Its types list the common methods only; it sends any token, PURGE and the like included.
    method: (request.method ?? 'GET') as inject.InjectOptions['method'],
    url: request.path,
    headers: request.headers,
    payload: request.body,
    remoteAddress: '127.0.0.1',
  });
  const body = answer.rawPayload;
  return {
    status: answer.statusCode,
    headers: answer.headers as InjectResponse['headers'],
    body,
    json: <T>() => JSON.parse(body.toString('utf8')) as T,
  };
}
