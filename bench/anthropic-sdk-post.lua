-- wrk script: the request the Anthropic SDK for Node sends for a message, as `@anthropic-ai/sdk`
-- 1.12.0 sent it on this machine (client.messages.create with a system prompt and one user
-- message, captured by a node:http server on 127.0.0.1, 2026-12-06): method, path and body
-- verbatim. Its headers (X-Stainless-*, anthropic-version, Authorization, Accept-Encoding: gzip,
-- deflate) come from wrk's -H (bench/paired.mjs, ANTHROPIC_SDK_MESSAGE); wrk adds Host and
-- Content-Length.
wrk.method = "POST"
wrk.path = "/v1/messages"
wrk.body = '{"model":"claude-sonnet-4-6","max_tokens":256,"system":"You are a helpful assistant.","messages":[{"role":"user","content":"Summarise the plot of Casablanca in two sentences."}]}'
