// BERT's uncased WordPiece tokenizer (all-MiniLM-L6-v2's), as Hugging Face `tokenizers` runs it.
//
// The steps and their order follow tokenizers' BertNormalizer, BertPreTokenizer, WordPiece model
// and TemplateProcessing post-processor, configured by the `tokenizer` section of the site's
// vestis-site.json (made from the model's tokenizer.json) and the vocabulary in vocab.txt:
//
//   1. special tokens written in the text ("[MASK]", exactly as in the vocabulary) are kept whole;
//   2. clean: drop NUL, U+FFFD and control/format/unassigned characters (not \t \n \r),
//      turn every whitespace character into a space;
//   3. put spaces around CJK ideographs (each becomes a word of its own);
//   4. strip accents: NFD, then drop non-spacing marks (Mn);
//   5. lower-case each character on its own (as Rust's char::to_lowercase: no final-sigma rule);
//   6. split on whitespace, then isolate each punctuation character (ASCII punctuation and
//      Unicode P*) as a word;
//   7. WordPiece each word: longest vocabulary prefix first, continuations with "##"; a word
//      longer than max_input_chars_per_word characters, or with a piece not in the vocabulary,
//      becomes [UNK];
//   8. truncate to max_length - 2 and add [CLS] ... [SEP].
//
// tests/site/test_wordpiece.py checks this token for token against the Python tokenizer on every
// KAGL title, hard strings, and every Unicode code point on its own.
(function (root) {
  "use strict";

  const CJK_RANGES = [
    [0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df], [0x2a700, 0x2b73f], [0x2b740, 0x2b81f],
    [0x2b920, 0x2ceaf], [0xf900, 0xfaff], [0x2f800, 0x2fa1f],
  ];
  const CONTROL = /^[\p{Cc}\p{Cf}\p{Cn}\p{Co}\p{Cs}]$/u;
  // Rust's char::is_whitespace (the Unicode White_Space property)
  const WHITESPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u;
  const PUNCTUATION = /^[\p{P}!-\/:-@\[-`{-~]$/u;
  const NONSPACING_MARK = /\p{Mn}/gu;

  function isCjk(cp) {
    for (const [lo, hi] of CJK_RANGES) if (cp >= lo && cp <= hi) return true;
    return false;
  }

  function isControl(ch) {
    return ch !== "\t" && ch !== "\n" && ch !== "\r" && CONTROL.test(ch);
  }

  // Steps 2-5 on a piece of text that holds no special token.
  function normalize(text, options) {
    let out = "";
    for (const ch of text) {
      const cp = ch.codePointAt(0);
      if (cp === 0 || cp === 0xfffd || isControl(ch)) continue;
      if (WHITESPACE.test(ch)) out += " ";
      else if (isCjk(cp)) out += " " + ch + " ";
      else out += ch;
    }
    if (options.stripAccents) out = out.normalize("NFD").replace(NONSPACING_MARK, "");
    if (options.lowercase) {
      let lowered = "";
      for (const ch of out) lowered += ch.toLowerCase();
      out = lowered;
    }
    return out;
  }

  // Step 6: words, punctuation isolated.
  function preTokenize(text) {
    const words = [];
    let word = "";
    for (const ch of text) {
      if (WHITESPACE.test(ch)) {
        if (word) words.push(word);
        word = "";
      } else if (PUNCTUATION.test(ch)) {
        if (word) words.push(word);
        words.push(ch);
        word = "";
      } else {
        word += ch;
      }
    }
    if (word) words.push(word);
    return words;
  }

  class WordPiece {
    // vocab: the tokens in id order; config: the site's tokenizer section.
    constructor(vocab, config) {
      this.ids = new Map(vocab.map((token, id) => [token, id]));
      this.config = config;
      this.unk = this.id(config.unk_token);
      this.cls = this.id(config.cls_token);
      this.sep = this.id(config.sep_token);
      this.specials = [...config.special_tokens].sort((a, b) => b.length - a.length);
    }

    static fromText(vocabText, config) {
      const vocab = vocabText.split("\n");
      if (vocab.length && vocab[vocab.length - 1] === "") vocab.pop();
      return new WordPiece(vocab, config);
    }

    id(token) {
      const id = this.ids.get(token);
      if (id === undefined) throw new Error(`the vocabulary has no ${token}`);
      return id;
    }

    // Step 7 for one word.
    wordIds(word) {
      const chars = Array.from(word);
      if (chars.length > this.config.max_input_chars_per_word) return [this.unk];
      const prefix = this.config.continuing_subword_prefix;
      const out = [];
      let start = 0;
      while (start < chars.length) {
        let end = chars.length;
        let found = -1;
        while (start < end) {
          const piece = (start > 0 ? prefix : "") + chars.slice(start, end).join("");
          const id = this.ids.get(piece);
          if (id !== undefined) {
            found = id;
            break;
          }
          end -= 1;
        }
        if (found < 0) return [this.unk];
        out.push(found);
        start = end;
      }
      return out;
    }

    // The ids of the text's content, without [CLS]/[SEP] and untruncated.
    contentIds(text) {
      const out = [];
      for (const part of this.splitSpecials(text)) {
        if (part.special) {
          out.push(this.id(part.text));
          continue;
        }
        const normalized = normalize(part.text, this.config);
        for (const word of preTokenize(normalized)) out.push(...this.wordIds(word));
      }
      return out;
    }

    // Step 1: the text cut around special tokens written in it (leftmost, longest first).
    splitSpecials(text) {
      const parts = [];
      let rest = text;
      while (rest) {
        let at = -1;
        let which = "";
        for (const token of this.specials) {
          const i = rest.indexOf(token);
          if (i >= 0 && (at < 0 || i < at)) {
            at = i;
            which = token;
          }
        }
        if (at < 0) {
          parts.push({ text: rest, special: false });
          break;
        }
        if (at > 0) parts.push({ text: rest.slice(0, at), special: false });
        parts.push({ text: which, special: true });
        rest = rest.slice(at + which.length);
      }
      return parts;
    }

    // Step 8: the model's input ids.
    encode(text) {
      const content = this.contentIds(text).slice(0, Math.max(0, this.config.max_length - 2));
      return [this.cls, ...content, this.sep];
    }
  }

  const api = { WordPiece, normalize, preTokenize };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.VestisWordPiece = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
