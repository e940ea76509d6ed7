-- wrk script: the request Google's Gen AI SDK for Node sends for generateContent, as
-- `@google/genai` 2.32.0 sent it on this machine (ai.models.generateContent with a system
-- instruction and one prompt, captured by a node:http server on 127.0.0.1, 2026-12-06): method,
-- path and body verbatim. Its headers (x-goog-api-client, x-goog-api-key, Accept-Encoding: gzip,
-- deflate) come from wrk's -H (bench/paired.mjs, GEMINI_SDK_GENERATE); wrk adds Host and
-- Content-Length.
wrk.method = "POST"
wrk.path = "/v1beta/models/gemini-2.5-flash:generateContent"
wrk.body = '{"contents":[{"parts":[{"text":"Summarise the plot of Casablanca in two sentences."}],"role":"user"}],"systemInstruction":{"parts":[{"text":"You are a helpful assistant."}],"role":"user"},"generationConfig":{}}'
