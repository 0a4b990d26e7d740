// Drives the `ai` package's DefaultChatTransport against a running Spool, as
// useChat does, and prints what it saw as one JSON object on stdout.
//
//   node transport.mjs '<json config>'
//
// config: { api, chatId, headers, body, text: "user text",
//           dropAfterDeltas: N  (abort the POST once N text deltas arrived, then
//                                 reconnectToStream and assemble the replay),
//           resumeApi: the api to reconnect through (default: api; another web
//                      process, as after a load balancer sent the reload elsewhere) }
//
// Output: { chunks: [...every chunk of the stream that was read to its end...],
//           dropped: { deltas, text } | null,   // what the first connection got
//           message: the UIMessage readUIMessageStream assembled,
//           afterEnd: what reconnectToStream returned once the answer ended (null) }
import { DefaultChatTransport, readUIMessageStream } from 'ai';

const config = JSON.parse(process.argv[2]);
const transport = new DefaultChatTransport({
  api: config.api,
  headers: config.headers,
  body: config.body,
});
// useChat reconnects with the same transport; another one stands for another web process.
const resumer = config.resumeApi
  ? new DefaultChatTransport({ api: config.resumeApi, headers: config.headers, body: config.body })
  : transport;
const messages = [{ id: 'user-1', role: 'user', parts: [{ type: 'text', text: config.text ?? 'Hello!' }] }];

// Records every chunk that passes, for the test to check the parts' order and shapes.
function recorded(stream, chunks) {
  return stream.pipeThrough(new TransformStream({
    transform(chunk, controller) { chunks.push(chunk); controller.enqueue(chunk); },
  }));
}

async function assemble(stream) {
  let last = null;
  for await (const message of readUIMessageStream({ stream, terminateOnError: true })) {
    last = message;
  }
  return last;
}

async function dropMidAnswer(n) {
  const abort = new AbortController();
  const stream = await transport.sendMessages({
    trigger: 'submit-message', chatId: config.chatId, messageId: undefined,
    messages, abortSignal: abort.signal,
  });
  const reader = stream.getReader();
  let deltas = 0;
  let text = '';
  while (deltas < n) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`the answer ended after ${deltas} deltas, before the drop`);
    if (value.type === 'text-delta') { deltas += 1; text += value.delta; }
  }
  abort.abort();  // closes the HTTP connection, as a reload or a lost network does
  await reader.cancel().catch(() => {});
  return { deltas, text };
}

async function main() {
  const chunks = [];
  let dropped = null;
  let stream;
  if (config.dropAfterDeltas) {
    dropped = await dropMidAnswer(config.dropAfterDeltas);
    stream = await resumer.reconnectToStream({ chatId: config.chatId });
    if (stream === null) throw new Error('reconnectToStream found nothing to resume mid-answer');
  } else {
    stream = await transport.sendMessages({
      trigger: 'submit-message', chatId: config.chatId, messageId: undefined,
      messages, abortSignal: undefined,
    });
  }
  const message = await assemble(recorded(stream, chunks));
  const afterEnd = await resumer.reconnectToStream({ chatId: config.chatId });
  process.stdout.write(JSON.stringify({ chunks, dropped, message, afterEnd }));
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
});
