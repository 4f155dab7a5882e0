"""Reading media: what codecs and picture size a rendition's segments carry."""
