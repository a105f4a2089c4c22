"""One module per chapter: the analyses, figures and verdict sentences its notebook calls."""
