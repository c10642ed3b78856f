// BERT's uncased WordPiece tokenizer (all-MiniLM-L6-v2's), as Hugging Face `tokenizers` runs it.
//
// The steps follow tokenizers' BertNormalizer, BertPreTokenizer, WordPiece model and
// TemplateProcessing post-processor, configured by the `tokenizer` section of the site's
// vestis-site.json (made from the model's tokenizer.json), the vocabulary (vocab.txt) and the
// character tables (chars.json, see vestis/site/tokenizer.py: char_tables):
//
//   1. special tokens written in the text ("[MASK]", exactly as in the vocabulary) are kept whole;
//   2. normalise each code point as the tables say: removed (NUL, U+FFFD, control and format
//      characters), a space (whitespace), padded with spaces (CJK ideographs: a word each), or
//      replaced (lower-cased, accents stripped: NFD without non-spacing marks; Hangul syllables
//      decompose by Unicode's formula);
//   3. split on separators, then isolate each punctuation character as a word;
//   4. WordPiece each word: longest vocabulary prefix first, continuations with "##"; a word
//      longer than max_input_chars_per_word characters, or with a piece not in the vocabulary,
//      becomes [UNK];
//   5. truncate to max_length - 2 and add [CLS] ... [SEP].
//
// The tables are probed from the Python tokenizer at export, so the page does not depend on
// the browser's own Unicode version (its \p{...} classes, toLowerCase, normalize).
// tests/site/test_wordpiece.py checks this token for token against the Python tokenizer on every
// KAGL title, hard strings, and code points of every plane on their own.
(function (root) {
  "use strict";

  // Whether cp lies in one of the ranges [lo, hi, lo, hi, ...] (sorted): binary search.
  function inRanges(ranges, cp) {
    let lo = 0;
    let hi = ranges.length / 2 - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (cp < ranges[2 * mid]) hi = mid - 1;
      else if (cp > ranges[2 * mid + 1]) lo = mid + 1;
      else return true;
    }
    return false;
  }

  function hangul(cp) {
    const s = cp - 0xac00;
    if (s < 0 || s >= 11172) return null;
    const tail = s % 28;
    return String.fromCodePoint(0x1100 + Math.floor(s / 588), 0x1161 + Math.floor((s % 588) / 28)) +
      (tail ? String.fromCodePoint(0x11a7 + tail) : "");
  }

  class Chars {
    constructor(tables) {
      this.t = tables;
      this.map = new Map(Object.entries(tables.map).map(([cp, s]) => [Number(cp), s]));
    }

    // Step 2 on a piece of text that holds no special token.
    normalize(text) {
      let out = "";
      for (const ch of text) {
        const cp = ch.codePointAt(0);
        if (inRanges(this.t.remove, cp)) continue;
        if (inRanges(this.t.space, cp)) out += " ";
        else if (inRanges(this.t.pad, cp)) out += " " + ch + " ";
        else if (this.map.has(cp)) out += this.map.get(cp);
        else out += hangul(cp) ?? ch;
      }
      return out;
    }

    // Step 3: words, punctuation isolated.
    words(text) {
      const words = [];
      let word = "";
      for (const ch of text) {
        const cp = ch.codePointAt(0);
        if (inRanges(this.t.split, cp)) {
          if (word) words.push(word);
          word = "";
        } else if (inRanges(this.t.punct, cp)) {
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
  }

  class WordPiece {
    // vocab: the tokens in id order; config: the site's tokenizer section; tables: chars.json.
    constructor(vocab, config, tables) {
      this.ids = new Map(vocab.map((token, id) => [token, id]));
      this.config = config;
      this.chars = new Chars(tables);
      this.unk = this.id(config.unk_token);
      this.cls = this.id(config.cls_token);
      this.sep = this.id(config.sep_token);
      this.specials = [...config.special_tokens].sort((a, b) => b.length - a.length);
    }

    static fromText(vocabText, config, tables) {
      const vocab = vocabText.split("\n");
      if (vocab.length && vocab[vocab.length - 1] === "") vocab.pop();
      return new WordPiece(vocab, config, tables);
    }

    id(token) {
      const id = this.ids.get(token);
      if (id === undefined) throw new Error(`the vocabulary has no ${token}`);
      return id;
    }

    // Step 4 for one word.
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
        for (const word of this.chars.words(this.chars.normalize(part.text))) out.push(...this.wordIds(word));
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

    // Step 5: the model's input ids.
    encode(text) {
      const content = this.contentIds(text).slice(0, Math.max(0, this.config.max_length - 2));
      return [this.cls, ...content, this.sep];
    }
  }

  const api = { WordPiece };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.VestisWordPiece = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
