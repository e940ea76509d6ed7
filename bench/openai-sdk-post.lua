-- wrk script: the request the OpenAI SDK for Node sends for a chat completion, as `openai` 6.49.0
-- sent it on this machine (client.chat.completions.create with a system and a user message,
-- captured by a node:http server on 127.0.0.1, 2026-12-06): method, path and body verbatim. Its
-- headers (the SDK's own x-stainless-* set, Authorization, Accept-Encoding: gzip, deflate) come
-- from wrk's -H (bench/paired.mjs, OPENAI_SDK_CHAT); wrk adds Host and Content-Length.
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Summarise the plot of Casablanca in two sentences."}]}'
