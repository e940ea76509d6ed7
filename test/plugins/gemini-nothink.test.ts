// Gemini NoThink's model table and body rewrites, without a network.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { applyNative, applyOpenAiCompat } from '../../plugins/gemini-nothink/index.js';
import { ruleFor } from '../../plugins/gemini-nothink/models.js';

describe('gemini-nothink: the model table', () => {
  test('each model family gets what it accepts', () => {
    assert.deepEqual(ruleFor('gemini-2.5-flash'), { thinkingBudget: 0, reasoningEffort: 'none' });
    assert.deepEqual(ruleFor('models/gemini-2.5-flash-lite-preview-09-2025'), { thinkingBudget: 0, reasoningEffort: 'none' });
    assert.equal(ruleFor('gemini-2.5-pro'), undefined, 'Pro cannot disable thinking');
    assert.equal(ruleFor('gemini-2.5-flash-image'), undefined);
    assert.deepEqual(ruleFor('gemini-3-flash-preview'), { thinkingLevel: 'minimal' });
    assert.deepEqual(ruleFor('gemini-3.1-flash-lite'), { thinkingLevel: 'minimal' });
    assert.deepEqual(ruleFor('gemini-3-pro-preview'), { thinkingLevel: 'low' });
    assert.deepEqual(ruleFor('publishers/google/models/gemini-3.1-pro-preview'), { thinkingLevel: 'low' });
    assert.equal(ruleFor('gemini-2.0-flash'), undefined);
  });
});

describe('gemini-nothink: native bodies', () => {
  const flash = ruleFor('gemini-2.5-flash')!;
  const three = ruleFor('gemini-3-flash-preview')!;

  test('adds a budget or a level, never both, keeping other keys', () => {
    const body = { contents: [], generationConfig: { temperature: 0.2, thinkingConfig: { includeThoughts: true } } };
    assert.equal(applyNative(body, flash), true);
    assert.deepEqual(body.generationConfig, { temperature: 0.2, thinkingConfig: { includeThoughts: true, thinkingBudget: 0 } });
    const other: Record<string, unknown> = { contents: [] };
    assert.equal(applyNative(other, three), true);
    assert.deepEqual(other.generationConfig, { thinkingConfig: { thinkingLevel: 'minimal' } });
  });

  test('the client\'s own thinking settings are left exactly as sent', () => {
    for (const body of [
      { generationConfig: { thinkingConfig: { thinkingBudget: -1 } } },
      { generationConfig: { thinkingConfig: { thinkingBudget: 512, includeThoughts: true } } },
      { generationConfig: { thinkingConfig: { thinkingLevel: 'high' } } },
      { generation_config: { thinking_config: { thinking_budget: 1024 } } },
      { generation_config: { thinking_config: { include_thoughts: true } } },
      { generationConfig: { thinking_config: { thinking_level: 'low' } } },
      { generationConfig: 'not an object' },
    ]) {
      const before = JSON.stringify(body);
      assert.equal(applyNative(body as Record<string, unknown>, flash), false, before);
      assert.equal(JSON.stringify(body), before);
    }
  });
});

describe('gemini-nothink: OpenAI-compatible bodies', () => {
  test('reasoning_effort "none" for 2.5 Flash only when the client set no thinking of its own', () => {
    const plain: Record<string, unknown> = { model: 'gemini-2.5-flash', messages: [] };
    assert.equal(applyOpenAiCompat(plain), true);
    assert.equal(plain.reasoning_effort, 'none');
    for (const body of [
      { model: 'gemini-2.5-flash', reasoning_effort: 'high' },
      { model: 'gemini-2.5-flash', extra_body: { google: { thinking_config: { thinking_budget: 10 } } } },
      { model: 'gemini-2.5-pro' },
      { model: 'gemini-3-flash-preview' },
      { messages: [] },
    ]) {
      const before = JSON.stringify(body);
      assert.equal(applyOpenAiCompat(body as Record<string, unknown>), false, before);
      assert.equal(JSON.stringify(body), before);
    }
  });
});
