// The official OpenAI Node SDK as a client of a real myriad-node on
// 127.0.0.1: completions and chat, streamed and not, /v1/models, two tenants
// whose same-named adapters are different models, and a 401 and a 404 that
// surface as the SDK's typed errors. Run by ctest (sdk.openai) with
// MYRIAD_CLI and MYRIAD_NODE pointing at the built binaries.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';

const cli = process.env.MYRIAD_CLI;
const nodeBin = process.env.MYRIAD_NODE;
assert.ok(cli && nodeBin, 'MYRIAD_CLI and MYRIAD_NODE must name the built binaries');

const dir = mkdtempSync(join(tmpdir(), 'myriad-sdk-'));
let server;
let baseURL;
let exited;

function client(apiKey) {
  return new OpenAI({ apiKey, baseURL, maxRetries: 0, timeout: 60_000 });
}

before(async () => {
  execFileSync(cli, ['make-model', '--shape', 'tiny', '--seed', '1', '--dtype', 'f32', '--out', join(dir, 'tiny')]);
  execFileSync(cli, ['make-adapter', '--model', join(dir, 'tiny'), '--rank', '8', '--seed', '3', '--out', join(dir, 'a')]);
  execFileSync(cli, ['make-adapter', '--model', join(dir, 'tiny'), '--rank', '8', '--seed', '4', '--out', join(dir, 'b')]);
  writeFileSync(join(dir, 'keys.json'), JSON.stringify({
    'alpha-key': 'alpha', 'beta-key': 'beta', 'ops-key': { tenant: 'ops', admin: true },
  }));
  server = spawn(nodeBin, ['--model', join(dir, 'tiny'), '--data', join(dir, 'data'), '--http', '127.0.0.1:0', '--rpc', '127.0.0.1:0',
    '--api-keys', join(dir, 'keys.json'), '--slots', '2', '--threads', '1', '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal })));
  let out = '';
  baseURL = await new Promise((resolve, reject) => {
    server.stdout.on('data', (d) => {
      out += d.toString();
      const m = out.match(/on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) resolve(`${m[1]}/v1`);
    });
    server.on('exit', () => reject(new Error(`myriad-node exited early: ${out}`)));
  });
  for (const [key, path] of [['alpha-key', 'a'], ['beta-key', 'b']]) {
    const r = await fetch(`${baseURL}/adapters`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'chat', path: join(dir, path) }),
    });
    assert.equal(r.status, 200, await r.text());
  }
});

after(async () => {
  if (server && server.exitCode === null) server.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('completions, streamed and not, give the same text', async () => {
  const alpha = client('alpha-key');
  const full = await alpha.completions.create({ model: 'chat', prompt: 'Hello', max_tokens: 8, temperature: 0 });
  assert.equal(full.object, 'text_completion');
  assert.equal(full.choices[0].finish_reason, 'length');
  assert.equal(full.usage.completion_tokens, 8);
  assert.equal(full.usage.prompt_tokens + 8, full.usage.total_tokens);
  let streamed = '';
  const stream = await alpha.completions.create({ model: 'chat', prompt: 'Hello', max_tokens: 8, temperature: 0, stream: true });
  for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
  assert.equal(streamed, full.choices[0].text);
});

test('chat, streamed with usage and not, gives the same message', async () => {
  const alpha = client('alpha-key');
  const messages = [{ role: 'user', content: 'Hi there' }];
  const full = await alpha.chat.completions.create({ model: 'alpha/chat', messages, max_tokens: 6, temperature: 0 });
  assert.equal(full.object, 'chat.completion');
  assert.equal(full.choices[0].message.role, 'assistant');
  let text = '';
  let usage = null;
  let role = null;
  const stream = await alpha.chat.completions.create({
    model: 'alpha/chat@1', messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const delta = chunk.choices[0]?.delta;
    if (delta?.role) role = delta.role;
    text += delta?.content ?? '';
  }
  assert.equal(role, 'assistant');
  assert.equal(text, full.choices[0].message.content);
  assert.equal(usage.completion_tokens, 6);
});

test('two tenants: the same name is two adapters, and neither sees the other', async () => {
  const alpha = client('alpha-key');
  const beta = client('beta-key');
  const req = { prompt: 'Hello', max_tokens: 8, temperature: 0 };
  const a = await alpha.completions.create({ model: 'chat', ...req });
  const b = await beta.completions.create({ model: 'chat', ...req });
  const base = await beta.completions.create({ model: 'tiny', ...req });
  assert.notEqual(a.choices[0].text, b.choices[0].text);
  assert.notEqual(a.choices[0].text, base.choices[0].text);
  const ids = (await alpha.models.list()).data.map((m) => m.id).sort();
  assert.deepEqual(ids, ['alpha/chat', 'tiny']);
  await assert.rejects(beta.completions.create({ model: 'alpha/chat', ...req }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `expected NotFoundError, got ${e}`);
    assert.equal(e.status, 404);
    return true;
  });
  const ops = (await client('ops-key').models.list()).data.map((m) => m.id).sort();
  assert.deepEqual(ops, ['alpha/chat', 'beta/chat', 'tiny']);
});

test('a wrong key is a 401 and a bad value a 400, as the SDK types them', async () => {
  await assert.rejects(client('nope').models.list(), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, `expected AuthenticationError, got ${e}`);
    assert.equal(e.status, 401);
    return true;
  });
  await assert.rejects(client('alpha-key').completions.create({ model: 'chat', prompt: 'x', temperature: 5 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `expected BadRequestError, got ${e}`);
    assert.match(e.message, /temperature/);
    return true;
  });
});

test('fine-tuning: a file, a job, its events and checkpoints, and the model it makes', async () => {
  const alpha = client('alpha-key');
  const lines = [];
  for (let i = 0; i < 12; i++) {
    const p = String.fromCharCode(97 + (i * 7) % 26, 97 + (i * 3) % 26, 97 + (i * 11) % 26);
    lines.push(JSON.stringify({ prompt: p, completion: p.at(-1).toUpperCase() }));
  }
  writeFileSync(join(dir, 'train.jsonl'), lines.join('\n') + '\n');
  const file = await alpha.files.create({ file: createReadStream(join(dir, 'train.jsonl')), purpose: 'fine-tune' });
  assert.equal(file.object, 'file');
  assert.equal(file.purpose, 'fine-tune');
  const job = await alpha.fineTuning.jobs.create({
    model: 'tiny', training_file: file.id, suffix: 'sdk', seed: 1,
    method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 3, learning_rate_multiplier: 2 } } },
  });
  assert.equal(job.object, 'fine_tuning.job');
  let j = job;
  for (let i = 0; i < 1200 && (j.status === 'queued' || j.status === 'running'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    j = await alpha.fineTuning.jobs.retrieve(job.id);
  }
  assert.equal(j.status, 'succeeded', JSON.stringify(j));
  assert.equal(j.fine_tuned_model, 'alpha/sdk');
  assert.ok(j.trained_tokens > 0);
  // The SDK pages through the events (newest first) with `after`.
  const events = [];
  for await (const e of alpha.fineTuning.jobs.listEvents(job.id, { limit: 2 })) events.push(e);
  assert.equal(events[0].message, 'The job has successfully completed');
  assert.ok(events.some((e) => e.type === 'metrics' && typeof e.data.train_loss === 'number'));
  assert.equal(new Set(events.map((e) => e.id)).size, events.length);
  const checkpoints = await alpha.fineTuning.jobs.checkpoints.list(job.id);
  assert.equal(checkpoints.data[0].fine_tuned_model_checkpoint, 'alpha/sdk@1');
  const listed = await alpha.fineTuning.jobs.list();
  assert.equal(listed.data[0].id, job.id);
  const out = await alpha.completions.create({ model: j.fine_tuned_model, prompt: 'abc', max_tokens: 2, temperature: 0 });
  assert.equal(out.usage.completion_tokens, 2);
  await assert.rejects(client('beta-key').fineTuning.jobs.retrieve(job.id), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `expected NotFoundError, got ${e}`);
    return true;
  });
});

test('n samples of several prompts: each choice is the request it stands for, streamed or not', async () => {
  const alpha = client('alpha-key');
  const req = { model: 'chat', max_tokens: 6, temperature: 0.9, seed: 5 };
  const many = await alpha.completions.create({ ...req, prompt: ['Hello', 'Bye now'], n: 2 });
  assert.deepEqual(many.choices.map((c) => c.index), [0, 1, 2, 3]);
  // Choice prompt * n + j samples prompt with seed + j, as one request would.
  const single = [];
  for (const [prompt, seed] of [['Hello', 5], ['Hello', 6], ['Bye now', 5], ['Bye now', 6]])
    single.push(await alpha.completions.create({ ...req, prompt, seed }));
  for (let i = 0; i < 4; i++) assert.equal(many.choices[i].text, single[i].choices[0].text, `choice ${i}`);
  assert.notEqual(many.choices[0].text, many.choices[1].text);
  assert.equal(many.usage.prompt_tokens, single[0].usage.prompt_tokens + single[2].usage.prompt_tokens);
  assert.equal(many.usage.completion_tokens, single.reduce((n, r) => n + r.usage.completion_tokens, 0));
  const texts = ['', '', '', ''];
  let usage = null;
  const stream = await alpha.completions.create({
    ...req, prompt: ['Hello', 'Bye now'], n: 2, stream: true, stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) texts[c.index] += c.text;
  }
  assert.deepEqual(texts, many.choices.map((c) => c.text));
  assert.deepEqual(usage, many.usage);
  // Chat: n messages, and a streamed role for each.
  const messages = [{ role: 'user', content: 'Hi there' }];
  const chat = await alpha.chat.completions.create({ model: 'chat', messages, max_tokens: 4, n: 3, seed: 1 });
  assert.deepEqual(chat.choices.map((c) => c.index), [0, 1, 2]);
  const roles = new Set();
  const chatStream = await alpha.chat.completions.create({ model: 'chat', messages, max_tokens: 4, n: 3, seed: 1, stream: true });
  const contents = ['', '', ''];
  for await (const chunk of chatStream) {
    for (const c of chunk.choices) {
      if (c.delta.role) roles.add(c.index);
      contents[c.index] += c.delta.content ?? '';
    }
  }
  assert.deepEqual([...roles].sort(), [0, 1, 2]);
  assert.deepEqual(contents, chat.choices.map((c) => c.message.content));
  await assert.rejects(alpha.completions.create({ ...req, prompt: ['a', 'b'], n: 65 }), (e) => {
    assert.ok(e instanceof OpenAI.BadRequestError, `expected BadRequestError, got ${e}`);
    assert.match(e.message, /130 choices; at most 128/);
    return true;
  });
});

test('echo returns the prompt with its logprobs, as the logits of `myriad logits` give them', async () => {
  const ids = [1, 17, 42, 99, 5, 200];
  const scored = await client('beta-key').completions.create({
    model: 'tiny', prompt: ids, echo: true, logprobs: 0, max_tokens: 0, temperature: 0,
  });
  const lp = scored.choices[0].logprobs;
  assert.equal(scored.usage.completion_tokens, 0);
  assert.equal(lp.tokens.length, ids.length);
  assert.equal(lp.token_logprobs[0], null);
  const out = execFileSync(cli, ['logits', '--model', join(dir, 'tiny'), '--ids', ids.join(','), '--all-positions']);
  const rows = JSON.parse(out.toString()).logits;
  for (let i = 1; i < ids.length; i++) {
    const row = rows[i - 1];
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    const ref = row[ids[i]] - lse;
    // Both are the CPU executor's f32 forward; batching may reorder sums.
    assert.ok(Math.abs(lp.token_logprobs[i] - ref) <= 1e-4 + 1e-4 * Math.abs(ref), `token ${i}: ${lp.token_logprobs[i]} vs ${ref}`);
  }
  // With generated tokens: the prompt first, then the output, offsets running on.
  const more = await client('beta-key').completions.create({
    model: 'tiny', prompt: ids, echo: true, logprobs: 0, max_tokens: 3, temperature: 0,
  });
  const m = more.choices[0].logprobs;
  assert.equal(m.token_logprobs[0], null);
  for (let i = 1; i < ids.length; i++) assert.ok(Math.abs(m.token_logprobs[i] - lp.token_logprobs[i]) <= 1e-5, `token ${i}`);
  assert.equal(m.tokens.length, ids.length + 3);
  assert.ok(more.choices[0].text.startsWith(scored.choices[0].text));
  for (let i = 1; i < m.text_offset.length; i++) assert.ok(m.text_offset[i] >= m.text_offset[i - 1]);
  // A text prompt echoes as written, streamed too.
  let streamed = '';
  const stream = await client('alpha-key').completions.create({ model: 'chat', prompt: 'Hello', echo: true, max_tokens: 4, temperature: 0, stream: true });
  for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
  const plain = await client('alpha-key').completions.create({ model: 'chat', prompt: 'Hello', max_tokens: 4, temperature: 0 });
  assert.equal(streamed, 'Hello' + plain.choices[0].text);
});

test('top_logprobs: alternatives most likely first, the prompt\'s as `myriad logits` ranks them', async () => {
  const beta = client('beta-key');
  const chat = await beta.chat.completions.create({
    model: 'tiny', messages: [{ role: 'user', content: 'Hi there' }], max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  const content = chat.choices[0].logprobs.content;
  assert.equal(content.length, 5);
  for (const t of content) {
    assert.equal(t.top_logprobs.length, 3);
    // Greedy takes the most likely token: the first alternative is the token itself (its
    // bytes are the token's own; the entry's text is what it released, whole characters).
    assert.equal(t.top_logprobs[0].logprob, t.logprob);
    for (let i = 1; i < 3; i++) assert.ok(t.top_logprobs[i].logprob <= t.top_logprobs[i - 1].logprob);
  }
  const ids = [1, 17, 42, 99, 5, 200];
  const scored = await beta.completions.create({ model: 'tiny', prompt: ids, echo: true, logprobs: 2, max_tokens: 1, temperature: 0 });
  const lp = scored.choices[0].logprobs;
  const rows = JSON.parse(execFileSync(cli, ['logits', '--model', join(dir, 'tiny'), '--ids', ids.join(','), '--all-positions']).toString()).logits;
  assert.equal(lp.top_logprobs[0], null);
  for (let i = 1; i <= ids.length; i++) {
    const row = rows[i - 1];
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
    const best = [...row].sort((a, b) => b - a).slice(0, 2).map((v) => v - lse);
    // Equal texts share a key (the likelier kept), so one or two entries.
    const got = Object.values(lp.top_logprobs[i]).sort((a, b) => b - a);
    assert.ok(got.length >= 1 && got.length <= 2, `position ${i}: ${JSON.stringify(lp.top_logprobs[i])}`);
    assert.ok(Math.abs(got[0] - best[0]) <= 1e-4 + 1e-4 * Math.abs(best[0]), `position ${i}: ${got[0]} vs ${best[0]}`);
    if (got.length === 2) assert.ok(Math.abs(got[1] - best[1]) <= 1e-4 + 1e-4 * Math.abs(best[1]), `position ${i}`);
  }
  await assert.rejects(beta.chat.completions.create({
    model: 'tiny', messages: [{ role: 'user', content: 'x' }], logprobs: true, top_logprobs: 21,
  }), (e) => e instanceof OpenAI.BadRequestError && /top_logprobs/.test(e.message));
});

test('logit_bias: -100 bans the greedy token, +100 forces one, as `myriad logits` says', async () => {
  const beta = client('beta-key');
  const ids = [3, 141, 59, 26];
  const row = JSON.parse(execFileSync(cli, ['logits', '--model', join(dir, 'tiny'), '--ids', ids.join(',')]).toString()).logits[0];
  const argmax = row.indexOf(Math.max(...row));
  // Banned, the next best is taken, its logprob under the biased distribution.
  const biased = row.map((v, i) => (i === argmax ? v - 100 : v));
  const max = Math.max(...biased);
  const lse = max + Math.log(biased.reduce((s, v) => s + Math.exp(v - max), 0));
  const banned = await beta.completions.create({
    model: 'tiny', prompt: ids, max_tokens: 1, temperature: 0, logprobs: 1, logit_bias: { [argmax]: -100 },
  });
  const got = banned.choices[0].logprobs.token_logprobs[0];
  assert.ok(Math.abs(got - (max - lse)) <= 1e-4 + 1e-4 * Math.abs(max - lse), `${got} vs ${max - lse}`);
  const plain = await beta.completions.create({ model: 'tiny', prompt: ids, max_tokens: 1, temperature: 0, logprobs: 1 });
  // (Token texts can be equal: the tiny model's byte tokens all read as U+FFFD.)
  assert.ok(plain.choices[0].logprobs.token_logprobs[0] > got, 'the banned token was the likelier one');
  // Forced, sampled at temperature 1: every token is the same one, with nearly all the mass.
  const forced = await beta.completions.create({
    model: 'tiny', prompt: ids, max_tokens: 3, temperature: 1, seed: 9, logprobs: 0, logit_bias: { 42: 100 },
    ignore_eos: true,
  });
  const lp = forced.choices[0].logprobs;
  assert.equal(lp.tokens.length, 3);
  for (const t of lp.tokens) assert.equal(t, lp.tokens[0]);
  for (const l of lp.token_logprobs) assert.ok(l > -1e-3, `${l}`);
  await assert.rejects(beta.completions.create({ model: 'tiny', prompt: 'x', logit_bias: { 9999999: 5 } }),
    (e) => e instanceof OpenAI.BadRequestError && /logit_bias of token 9999999: outside the vocabulary/.test(e.message));
  await assert.rejects(beta.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], logit_bias: { 5: 101 } }),
    (e) => e instanceof OpenAI.BadRequestError && /out of range/.test(e.message));
});

test('stop_token_ids and min_tokens (vLLM\'s): the stop token ends a choice, but not before min_tokens', async () => {
  const beta = client('beta-key');
  const ids = [3, 141, 59, 26];
  const row = JSON.parse(execFileSync(cli, ['logits', '--model', join(dir, 'tiny'), '--ids', ids.join(',')]).toString()).logits[0];
  const argmax = row.indexOf(Math.max(...row));
  const stopped = await beta.completions.create({
    model: 'tiny', prompt: ids, max_tokens: 6, temperature: 0, stop_token_ids: [argmax],
  });
  assert.equal(stopped.choices[0].finish_reason, 'stop');
  assert.equal(stopped.usage.completion_tokens, 1);  // the stop token itself is sent
  // With min_tokens the stop token cannot be sampled first: the next best is, with its logprob
  // under the distribution without it (ignore_eos: the model's end-of-sequence ids, otherwise
  // held back as well, stay in it).
  const held = await beta.completions.create({
    model: 'tiny', prompt: ids, max_tokens: 6, temperature: 0, stop_token_ids: [argmax], min_tokens: 3, logprobs: 0,
    ignore_eos: true,
  });
  assert.ok(held.usage.completion_tokens >= 3, `${held.usage.completion_tokens} tokens`);
  const others = row.filter((_, i) => i !== argmax);
  const max = Math.max(...others);
  const lse = max + Math.log(others.reduce((s, v) => s + Math.exp(v - max), 0));
  const got = held.choices[0].logprobs.token_logprobs[0];
  assert.ok(Math.abs(got - (max - lse)) <= 1e-4 + 1e-4 * Math.abs(max - lse), `${got} vs ${max - lse}`);
  await assert.rejects(beta.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 4, min_tokens: 5 }),
    (e) => e instanceof OpenAI.BadRequestError && /min_tokens 5 exceeds max_tokens 4/.test(e.message));
});

test('SIGTERM drains and exits 0', async () => {
  server.kill('SIGTERM');
  const { code } = await exited;
  assert.equal(code, 0);
});
