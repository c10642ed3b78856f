// node run_wordpiece.js VOCAB CONFIG CHARS TEXTS: prints the ids of each text (a JSON list of lists).
"use strict";
const fs = require("fs");
const { WordPiece } = require(process.env.WORDPIECE_JS);
const [vocabPath, configPath, charsPath, textsPath] = process.argv.slice(2);
const read = (p) => JSON.parse(fs.readFileSync(p, "utf8"));
const tok = WordPiece.fromText(fs.readFileSync(vocabPath, "utf8"), read(configPath), read(charsPath));
process.stdout.write(JSON.stringify(read(textsPath).map((t) => tok.encode(t))));
