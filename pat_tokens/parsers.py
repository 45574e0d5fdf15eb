"""Request body parsers of the token API."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser


class JSONObjectParser(JSONParser):
    """DRF's JSON parser, with nesting too deep for Python's parser reported as a parse error."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None


# DRF's default set, with the JSON parser above in place of DRF's.
PARSER_CLASSES = (JSONObjectParser, FormParser, MultiPartParser)
