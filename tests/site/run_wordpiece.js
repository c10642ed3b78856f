// node run_wordpiece.js VOCAB CONFIG TEXTS: prints the ids of each text (a JSON list of lists).
"use strict";
const fs = require("fs");
const { WordPiece } = require(process.env.WORDPIECE_JS);
const [vocabPath, configPath, textsPath] = process.argv.slice(2);
const tok = WordPiece.fromText(fs.readFileSync(vocabPath, "utf8"), JSON.parse(fs.readFileSync(configPath, "utf8")));
const texts = JSON.parse(fs.readFileSync(textsPath, "utf8"));
process.stdout.write(JSON.stringify(texts.map((t) => tok.encode(t))));
