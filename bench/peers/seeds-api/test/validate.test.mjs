// `node --test` in bench/peers/seeds-api: the request checks, without a database.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_CONTENT_CHARS, parseMessage } from '../validate.mjs';

const conversationId = '33333333-3333-4333-8333-333333333333';
const good = { conversationId, content: 'hello', clientMsgId: 'c1' };

test('a well-formed message is accepted, ids lower-cased', () => {
  const upper = { ...good, conversationId: conversationId.toUpperCase(), recipientId: conversationId };
  assert.deepEqual(parseMessage(upper), {
    conversationId,
    recipientId: conversationId,
    content: 'hello',
    clientMsgId: 'c1',
  });
});

test('each bad field is refused with a message naming it', () => {
  const cases = [
    [null, /JSON object/],
    [[good], /JSON object/],
    [{ ...good, conversationId: 'x' }, /conversationId/],
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
