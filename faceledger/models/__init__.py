"""The model boundary: embedding models as plug-ins (a registry of declared models), and the model
files they are made from. Nothing outside this package knows a chip size or a template dimension."""
