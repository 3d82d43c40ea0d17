-- SMS encoding through SQL.
SELECT body, (eightms.sms_info(body)).*
  FROM (VALUES ('Hello world!'), ('Price: 10€ {promo}'), ('It’s “great” – really…'),
			   ('Hi 😀'), ('Grüße aus Köln'), (repeat('a', 161)), (repeat('ж', 71)), ('')) AS v(body)
 WHERE length(body) < 40;
SELECT length(b) AS len, (eightms.sms_info(b)).segments
  FROM (VALUES (repeat('a', 160)), (repeat('a', 161)), (repeat('a', 306)), (repeat('a', 307)),
			   (repeat('ж', 70)), (repeat('ж', 71)), (repeat('ж', 134)), (repeat('ж', 135))) AS v(b);
SELECT eightms.sms_fold('It’s “great” – really… 10 am');
SELECT (eightms.sms_info(eightms.sms_fold('It’s “great” – really…'))).encoding AS folded_encoding;
