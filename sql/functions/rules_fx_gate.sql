coalesce(t.transaction_currency_code::text COLLATE "C" <> t.base_currency_code::text COLLATE "C", false)
        AND hera_migration_is_financial_v2(t.smart_code)
        AND upper(nullif(btrim(t.transaction_currency_code), '')) <> upper(nullif(btrim(t.base_currency_code), ''))
        AND (t.exchange_rate IS NULL OR t.exchange_rate_date IS NULL
             OR nullif(btrim(t.exchange_rate_type::text), '') IS NULL)
