// Drives the `ai` package's default OpenAI provider (`@ai-sdk/openai`, which calls the
// Responses API) against a running Spool: streamText with a tool the SDK executes,
// so the second step sends the call back as `function_call` + `function_call_output`.
//
//   node responses.mjs '<json config>'
//
// config: { baseURL, apiKey, model, prompt, mocks: [mock options per request, in order] }
// Output: { text, steps: [{finishReason, toolCalls, toolResults, text}], usage,
//           requests: [each request body as sent, after the mock options were added],
//           responseIds: [the `Spool-Generation-Id` of each answer] }
import { createOpenAI } from '@ai-sdk/openai';
import { jsonSchema, stepCountIs, streamText, tool } from 'ai';

const config = JSON.parse(process.argv[2]);
const requests = [];
const responseIds = [];

// The mock provider's options travel in the body (as `extra_body` does in the Python
// SDK); the AI SDK has no such option, so a fetch wrapper adds them, one per request.
async function withMock(url, init) {
  const body = JSON.parse(init.body);
  const mock = config.mocks[requests.length];
  if (mock) body.mock = mock;
  requests.push(body);
  const response = await fetch(url, { ...init, body: JSON.stringify(body) });
  responseIds.push(response.headers.get('spool-generation-id'));
  return response;
}

const openai = createOpenAI({ baseURL: config.baseURL, apiKey: config.apiKey, fetch: withMock });
const result = streamText({
  model: openai(config.model),
  prompt: config.prompt,
  tools: {
    get_weather: tool({
      description: 'Weather for a city',
      inputSchema: jsonSchema({ type: 'object', properties: { city: { type: 'string' } },
                                required: ['city'] }),
      execute: async ({ city }) => ({ city, celsius: 18 }),
    }),
  },
  stopWhen: stepCountIs(3),
});

let text = '';
for await (const part of result.fullStream) {
  if (part.type === 'text-delta') text += part.text;
  if (part.type === 'error') throw part.error;
}
const steps = (await result.steps).map((step) => ({
  finishReason: step.finishReason,
  text: step.text,
  toolCalls: step.toolCalls.map((c) => ({ toolCallId: c.toolCallId, toolName: c.toolName,
                                          input: c.input })),
  toolResults: step.toolResults.map((r) => ({ toolCallId: r.toolCallId, output: r.output })),
}));
console.log(JSON.stringify({ text, steps, usage: await result.totalUsage, requests,
                             responseIds }));
