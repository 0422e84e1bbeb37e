// `node --test` in bench/peers/seeds-api: the request checks, without a database.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_CONTENT_CHARS, parseMessage } from '../validate.mjs';

const conversationId = '4242';
const good = { conversationId, content: 'hello', clientMsgId: 'c1' };

test('a well-formed message is accepted', () => {
  assert.deepEqual(parseMessage({ ...good, recipientId: '7' }), {
    conversationId,
    recipientId: '7',
    content: 'hello',
    clientMsgId: 'c1',
  });
});

test('each bad field is refused with a message naming it', () => {
  const cases = [
    [null, /JSON object/],
    [[good], /JSON object/],
    [{ ...good, conversationId: 'x' }, /conversationId/],
    [{ ...good, conversationId: 42 }, /conversationId/],
    [{ ...good, conversationId: '042' }, /conversationId/],
    [{ ...good, conversationId: '9223372036854775808' }, /conversationId/],
    [{ ...good, recipientId: 7 }, /recipientId/],
    [{ ...good, content: '  ' }, /content/],
    [{ ...good, content: 5 }, /content/],
    [{ ...good, content: 'a'.repeat(MAX_CONTENT_CHARS + 1) }, /at most 10000/],
    [{ ...good, clientMsgId: '' }, /clientMsgId/],
    [{ ...good, clientMsgId: 'c'.repeat(101) }, /clientMsgId/],
  ];
  for (const [body, message] of cases) {
    assert.throws(() => parseMessage(body), (error) => error.status === 400 && message.test(error.message));
  }
});

test('content is counted in characters, not UTF-16 units', () => {
  const emoji = '😀'.repeat(MAX_CONTENT_CHARS);
  assert.equal(parseMessage({ ...good, content: emoji }).content, emoji);
});
